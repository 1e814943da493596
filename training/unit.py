"""Executing a work unit (r, k): H inner steps from G_r + slot k's optimizer state, recording
a trace leaf per step and snapshots every k steps; output = pseudo-gradient + slot state.

Blob layouts (safetensors, one metadata key `format`):
    crowdtrain/global    G_r:        param/<p>
    crowdtrain/slot      slot state: adam.exp_avg/<p>, adam.exp_avg_sq/<p>, adam.step
    crowdtrain/state     snapshot:   param/* + adam.* (the full state S_s)
    crowdtrain/output    output:     pgrad/<p> = G_r[p] - theta_H[p]  + the new slot state
inputHash = state_digest(S_0); outputHash = SHA-256(output blob); traceRoot = Merkle root.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch

from protocol.hashing import sha256
from protocol.spec import JobSpec
from training import StateError
from training.data import Dataset
from training.state import (EXP_AVG, EXP_AVG_SQ, PARAM, PGRAD, STEP, Tensors, from_blob, prefixed, select,
                            state_digest, tensors_digest, to_blob)
from training.step import Trainer, lr_at
from training.trace import Trace, TraceLeaf, loss_to_bits

GLOBAL, SLOT, STATE, OUTPUT = "crowdtrain/global", "crowdtrain/slot", "crowdtrain/state", "crowdtrain/output"
ProgressFn = Callable[[int, int, float], None]  # (steps done, H, last loss)
BlobLike = bytes | bytearray | Path | str | Mapping[str, torch.Tensor]


def as_tensors(x: BlobLike, kind: str) -> dict[str, torch.Tensor]:
    """A blob given as bytes, a path or an already loaded mapping -> CPU tensors."""
    if isinstance(x, Mapping):
        return dict(x)
    return from_blob(x, kind)


def batch_for(spec: JobSpec, dataset: Dataset, round: int, unit: int, step: int) -> torch.Tensor:
    return dataset.batch(seed=spec.seed, round=round, unit=unit, step=step,
                         batch_size=spec.batch_size, seq_len=spec.seq_len)


def batch_digest(tokens: torch.Tensor) -> bytes:
    """Digest of a batch: canonical bytes of the single uint8 tensor `tokens` (B, T+1)."""
    return tensors_digest({"tokens": tokens})


def start_state(spec: JobSpec, global_ckpt: BlobLike, slot_state: BlobLike | None) -> dict[str, torch.Tensor]:
    """S_0 = G_r's parameters + slot k's AdamW state (zeros and step 0 when absent)."""
    g = as_tensors(global_ckpt, GLOBAL)
    params = select(g, PARAM)
    if len(params) != len(g):
        raise StateError("global checkpoint may only hold param/* tensors")
    state = prefixed(params, PARAM)
    if slot_state is None:
        state.update(prefixed({n: torch.zeros_like(p) for n, p in params.items()}, EXP_AVG))
        state.update(prefixed({n: torch.zeros_like(p) for n, p in params.items()}, EXP_AVG_SQ))
        state[STEP] = torch.tensor(0, dtype=torch.int64)
    else:
        s = as_tensors(slot_state, SLOT)
        extra = [n for n in s if not n.startswith(("adam.exp_avg/", "adam.exp_avg_sq/")) and n != STEP]
        if extra:
            raise StateError(f"slot state holds non-optimizer tensors {extra[:3]}")
        state.update(s)
    return state


def expected_input_hash(spec: JobSpec, global_ckpt: BlobLike, slot_state: BlobLike | None) -> bytes:
    return state_digest(start_state(spec, global_ckpt, slot_state))


def slot_of(state: Tensors) -> dict[str, torch.Tensor]:
    return {n: t for n, t in state.items() if n.startswith("adam.")}


def output_blob(global_params: Tensors, final_state: Tensors) -> bytes:
    """pgrad/<p> = G_r[p] - theta_H[p] (fp32, CPU) plus the final slot state."""
    out = {PGRAD + n: (g.to("cpu") - final_state[PARAM + n].detach().to("cpu")) for n, g in global_params.items()}
    out.update({n: t.detach().to("cpu") for n, t in slot_of(final_state).items()})
    return to_blob(out, OUTPUT)


@dataclass
class Recorder:
    """Collects trace leaves and snapshots; times what recording costs."""

    spec: JobSpec
    round: int
    unit: int
    input_hash: bytes
    leaves: list[TraceLeaf] = field(default_factory=list)
    snapshots: dict[int, bytes] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def leaf(self, step: int, batch_dig: bytes, source: "Trainer | Tensors", loss: float) -> TraceLeaf:
        """Record step `step` whose result state is `source` (a Trainer, or a state mapping);
        snapshots S_{step+1} when step+1 is a multiple of the snapshot interval."""
        t = time.perf_counter()
        digest = source.digest() if isinstance(source, Trainer) else state_digest(source)
        leaf = TraceLeaf(step, batch_dig, digest, loss_to_bits(loss))
        self.leaves.append(leaf)
        self.losses.append(loss)
        if (step + 1) % self.spec.verification.snapshot_interval == 0:
            self.snapshots[step + 1] = (source.snapshot() if isinstance(source, Trainer)
                                        else to_blob(source, STATE))
        self.seconds += time.perf_counter() - t
        return leaf

    def trace(self) -> Trace:
        return Trace(self.round, self.unit, self.input_hash, tuple(self.leaves))


@dataclass(frozen=True)
class UnitResult:
    """Everything a worker uploads and signs for unit (round, unit).

    snapshots: step s -> safetensors bytes of S_s for s = 0, k, 2k, ..., H.
    timing: seconds; "total", "record" (digests + leaves + snapshots), "train" (the rest).
    """

    round: int
    unit: int
    input_hash: bytes
    output_hash: bytes
    trace_root: bytes
    trace: Trace
    snapshots: dict[int, bytes]
    output_blob: bytes
    losses: list[float]
    timing: dict[str, float]

    def trace_json(self) -> bytes:
        return self.trace.to_json()


def finish(rec: Recorder, global_params: Tensors, final_state: Tensors, t0: float) -> UnitResult:
    blob = output_blob(global_params, final_state)
    trace = rec.trace()
    total = time.perf_counter() - t0
    return UnitResult(rec.round, rec.unit, rec.input_hash, sha256(blob), trace.root, trace,
                      dict(rec.snapshots), blob, list(rec.losses),
                      {"total": total, "record": rec.seconds, "train": total - rec.seconds})


def run_unit(spec: JobSpec, dataset: Dataset, round: int, unit: int, global_ckpt: BlobLike,
             slot_state: BlobLike | None = None, *, progress: ProgressFn | None = None,
             trainer: Trainer | None = None) -> UnitResult:
    """Run unit (round, unit) honestly. Call `set_determinism` first (the worker does).

    `global_ckpt` is G_r (blob bytes / path / tensors under param/*); `slot_state` is slot
    k's optimizer state from its previous accepted unit (None in round 0: zeros, step 0).
    `trainer` may be passed to reuse an allocated model between units.
    """
    _check_indices(spec, round, unit)
    t0 = time.perf_counter()
    s0 = start_state(spec, global_ckpt, slot_state)
    tr = trainer or Trainer(spec)
    tr.load_state(s0)
    rec = Recorder(spec, round, unit, tr.digest())
    rec.snapshots[0] = to_blob(s0, STATE)
    for i in range(spec.inner_steps):
        tokens = batch_for(spec, dataset, round, unit, i)
        bd = batch_digest(tokens)
        loss = tr.step(tokens, lr_at(spec, round, i))
        rec.leaf(i, bd, tr, loss)
        if progress:
            progress(i + 1, spec.inner_steps, loss)
    return finish(rec, select(s0, PARAM), tr.state(), t0)


def _check_indices(spec: JobSpec, round: int, unit: int) -> None:
    if not 0 <= round < spec.rounds:
        raise ValueError(f"round {round} is outside the job's rounds 0..{spec.rounds - 1}")
    if not 0 <= unit < spec.units_per_round:
        raise ValueError(f"unit {unit} is outside the job's units 0..{spec.units_per_round - 1}")
