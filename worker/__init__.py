"""The GPU owner's agent: pre-flight checks, stake, claim/train/upload/sign/submit, earnings.

Layers: worker -> training -> protocol (never the verifier or the coordinator package).
See docs/worker.md.
"""


class WorkerError(Exception):
    """Base class of every error raised by the worker package."""


class PreflightError(WorkerError, RuntimeError):
    """The machine or the account cannot run the job (memory, disk, stake, reachability)."""


class LeaseLostError(WorkerError, RuntimeError):
    """The coordinator no longer recognises this worker's lease (expired, re-assigned)."""


class InputError(WorkerError, ValueError):
    """A unit's inputs are inconsistent (spec hash mismatch, dataset missing from the blob store)."""
