"""Dishonest workers by named fault (hivemind's `Fault` style), for tests and the e2e demo.

`run_dishonest_unit(fault, ...)` returns a `UnitResult` whose signed fields (input_hash,
output_hash, trace_root; `Claim.of(result)`) are what the cheating worker would sign, and
whose trace / snapshots / output blob are what it would upload. For the TAMPER_* faults
the uploads differ from what was signed. Each fault saves compute or changes the
training in a way the proof-of-learning literature reports (Jia et al. 2021; Zhang et
al. 2022; Fang et al. 2023) or that marketplaces have seen (copying, replaying results).
"""
from __future__ import annotations

import dataclasses
import enum
import random
import time
from typing import Callable

import torch

from protocol.hashing import sha256
from protocol.spec import JobSpec
from training.data import Dataset
from training.state import PARAM, PGRAD, from_blob, select, state_digest, to_blob
from training.step import Trainer, lr_at
from training.trace import Trace, TraceLeaf, loss_to_bits
from training.unit import (OUTPUT, STATE, BlobLike, Recorder, UnitResult, batch_digest, batch_for, finish, run_unit,
                           start_state)


class Fault(enum.Enum):
    LAZY_INITIAL = "lazy_initial"            # returns the input weights; trace claims no change
    RANDOM_WEIGHTS = "random_weights"        # random weights, made-up trace and snapshots
    SKIP_STEPS = "skip_steps"                # computes only every other step
    WRONG_DATA = "wrong_data"                # trains on another unit's batches, records the right digests
    WRONG_SHARD = "wrong_shard"              # trains on the held-out shard
    CHANGED_LR = "changed_lr"                # 3x the inner learning rate
    CHANGED_PRECISION = "changed_precision"  # bf16 autocast in an fp32 job
    COPY_OTHER_UNIT = "copy_other_unit"      # submits another unit's result of the same round
    REPLAY_OLD_PROOF = "replay_old_proof"    # resubmits its own result from an earlier round
    INTERPOLATE = "interpolate"              # Zhang et al. 2022: interpolated intermediate states
    TAMPER_SNAPSHOT = "tamper_snapshot"      # fakes a segment, then swaps its start snapshot after signing
    TAMPER_TRACE = "tamper_trace"            # edits trace leaves after signing
    FAKE_SEGMENTS = "fake_segments"          # skips the steps of a fraction of the segments
    POISON_OUTPUT = "poison_output"          # honest trace, scaled pseudo-gradient in the output


def _loop(spec: JobSpec, ds: Dataset, r: int, k: int, g: BlobLike, slot: BlobLike | None, *,
          fake: Callable[[int], bool] = lambda i: False, lr_scale: float = 1.0, precision: str | None = None,
          data: Callable[[int], torch.Tensor] | None = None) -> UnitResult:
    """The honest loop with knobs: skip steps where fake(i) (state unchanged, loss repeated),
    scale the lr, change precision, or train on other data while recording the right digest."""
    t0 = time.perf_counter()
    s0 = start_state(spec, g, slot)
    tr = Trainer(spec, precision=precision)
    tr.load_state(s0)
    rec = Recorder(spec, r, k, tr.digest())
    rec.snapshots[0] = to_blob(s0, STATE)
    loss = 5.5
    for i in range(spec.inner_steps):
        claimed = batch_for(spec, ds, r, k, i)
        if not fake(i):
            loss = tr.step(data(i) if data else claimed, lr_at(spec, r, i) * lr_scale)
        rec.leaf(i, batch_digest(claimed), tr, loss)
    return finish(rec, select(s0, PARAM), tr.state(), t0)


def _random_like(state: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {n: (torch.randn(t.shape, generator=gen) * 0.02 if t.is_floating_point() else t.clone())
           for n, t in state.items()}
    return {n: (t.abs() if "exp_avg_sq" in n else t) for n, t in out.items()}


def _fabricated(spec: JobSpec, ds: Dataset, r: int, k: int, s0: dict, states: Callable[[int], dict],
                losses: Callable[[int, dict], float]) -> UnitResult:
    """A trace whose leaf i claims the state `states(i + 1)` (made up, not trained)."""
    t0 = time.perf_counter()
    rec = Recorder(spec, r, k, state_digest(s0))
    rec.snapshots[0] = to_blob(s0, STATE)
    for i in range(spec.inner_steps):
        st = states(i + 1)
        rec.leaf(i, batch_digest(batch_for(spec, ds, r, k, i)), st, losses(i, st))
    return finish(rec, select(s0, PARAM), states(spec.inner_steps), t0)


def run_dishonest_unit(fault: Fault, spec: JobSpec, dataset: Dataset, round: int, unit: int,
                       global_ckpt: BlobLike, slot_state: BlobLike | None = None, *,
                       fraction: float = 0.3, seed: int = 0, donor: UnitResult | None = None) -> UnitResult:
    """What a worker with `fault` signs and uploads for unit (round, unit).

    fraction: FAKE_SEGMENTS share of faked segments (rounded to a whole number, >= 1).
    seed: the cheater's own randomness (which segments to fake, random weights).
    donor: the result copied by COPY_OTHER_UNIT (default: honest unit (round, unit+1)) or
    replayed by REPLAY_OLD_PROOF (required: an earlier result of this worker).
    """
    spec_k, H = spec.verification.snapshot_interval, spec.inner_steps
    args = (spec, dataset, round, unit, global_ckpt, slot_state)
    rng = random.Random(seed)
    if fault is Fault.LAZY_INITIAL:
        return _loop(*args, fake=lambda i: True)
    if fault is Fault.SKIP_STEPS:
        return _loop(*args, fake=lambda i: i % 2 == 1)
    if fault is Fault.WRONG_DATA:
        other = (unit + 1) % max(spec.units_per_round, 2)
        return _loop(*args, data=lambda i: batch_for(spec, dataset, round, other, i))
    if fault is Fault.WRONG_SHARD:
        return _loop(*args, data=lambda i: dataset.val_batch(i, batch_size=spec.batch_size, seq_len=spec.seq_len))
    if fault is Fault.CHANGED_LR:
        return _loop(*args, lr_scale=3.0)
    if fault is Fault.CHANGED_PRECISION:
        return _loop(*args, precision="bf16" if spec.precision == "fp32" else "fp32")
    if fault is Fault.FAKE_SEGMENTS:
        n = H // spec_k
        faked = set(rng.sample(range(n), max(1, round_half_up(fraction * n))))
        return _loop(*args, fake=lambda i: i // spec_k in faked)
    if fault is Fault.COPY_OTHER_UNIT:
        src = donor or run_unit(spec, dataset, round, (unit + 1) % spec.units_per_round, global_ckpt, slot_state)
        return dataclasses.replace(src, round=round, unit=unit,
                                   trace=Trace(round, unit, src.input_hash, src.trace.leaves))
    if fault is Fault.REPLAY_OLD_PROOF:
        if donor is None:
            raise ValueError("REPLAY_OLD_PROOF needs donor= an earlier result of this worker")
        return dataclasses.replace(donor, round=round, unit=unit,
                                   trace=Trace(round, unit, donor.input_hash, donor.trace.leaves))
    if fault is Fault.POISON_OUTPUT:
        res = run_unit(*args)
        out = from_blob(res.output_blob)
        out = {n: (t * 5.0 if n.startswith(PGRAD) else t) for n, t in out.items()}
        blob = to_blob(out, OUTPUT)
        return dataclasses.replace(res, output_blob=blob, output_hash=sha256(blob))

    s0 = start_state(spec, global_ckpt, slot_state)
    if fault is Fault.RANDOM_WEIGHTS:
        gen = torch.Generator().manual_seed(seed)
        rand = {s: _random_like(s0, gen) for s in range(spec_k, H + 1, spec_k)}
        return _fabricated(spec, dataset, round, unit, s0, lambda s: rand[-(-s // spec_k) * spec_k],
                           lambda i, st: 5.5 - i * 1e-3)
    if fault is Fault.INTERPOLATE:
        # Zhang et al. 2022: train a short cut (H/4 steps at 4x lr) to a plausible end point,
        # then claim the states on the straight line S_0 -> end point, with real forward losses.
        tr = Trainer(spec)
        tr.load_state(s0)
        for i in range(max(1, H // 4)):
            tr.step(batch_for(spec, dataset, round, unit, i), lr_at(spec, round, i) * 4)
        end = {n: t.detach().clone() for n, t in tr.state().items()}
        end["adam.step"] = s0["adam.step"] + H

        def interp(s: int) -> dict:
            a = s / H
            st = {n: (t + a * (end[n] - t) if t.is_floating_point() else t) for n, t in s0.items()}
            st["adam.step"] = s0["adam.step"] + s
            return st

        def fwd_loss(i: int, st: dict) -> float:
            ev = Trainer(spec)
            ev.load_state(st)
            with torch.no_grad():
                return float(ev.loss(batch_for(spec, dataset, round, unit, i)).item())
        return _fabricated(spec, dataset, round, unit, s0, interp, fwd_loss)
    if fault is Fault.TAMPER_SNAPSHOT:
        # fake segment j, sign, then upload a snapshot S_{jk} that "explains" the faked leaves
        n = H // spec_k
        j = rng.randrange(1, n) if n > 1 else 0
        res = _loop(*args, fake=lambda i: i // spec_k == j)
        snaps = dict(res.snapshots)
        gen = torch.Generator().manual_seed(seed)
        snaps[j * spec_k] = to_blob(_random_like(s0, gen), STATE)
        return dataclasses.replace(res, snapshots=snaps)
    if fault is Fault.TAMPER_TRACE:
        # fake the last segment, sign, then rewrite its leaves after signing
        res = _loop(*args, fake=lambda i: i >= H - spec_k)
        leaves = list(res.trace.leaves)
        for i in range(H - spec_k, H):
            lf = leaves[i]
            leaves[i] = TraceLeaf(lf.step, lf.batch_digest, bytes(32), loss_to_bits(lf.loss * 0.99))
        return dataclasses.replace(res, trace=Trace(round, unit, res.input_hash, tuple(leaves)))
    raise ValueError(f"unknown fault {fault!r}")


def round_half_up(x: float) -> int:
    return int(x + 0.5)
