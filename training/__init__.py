"""Deterministic training engine shared by worker, verifier and coordinator.

Layers (imports point down): job -> (unit, replay, outer) -> (step, recorder) ->
(models, data, state, determinism) -> protocol. The worker and the verifier run the same
`train_step`, which is what makes replay meaningful. See docs/training.md.
"""


class TrainingError(Exception):
    """Base class of every error raised by the training package."""


class DatasetError(TrainingError, ValueError):
    """A dataset is malformed, missing a shard, or a shard's hash does not match its manifest."""


class StateError(TrainingError, ValueError):
    """A checkpoint / snapshot / output blob is malformed or does not fit the job's model."""


class ReplayError(TrainingError, ValueError):
    """Replay inputs are inconsistent (e.g. a snapshot that matches no committed digest)."""
