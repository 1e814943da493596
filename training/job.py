"""A whole DiLoCo job in one process: R rounds x K units + outer steps (benchmarks, tests).

This is the same sequence the coordinator drives across machines, without the network:
round r runs units (r, 0..K-1) from G_r and each slot's optimizer state, then the outer
step makes G_{r+1}; slot k's next state is the one in its unit's output blob. A
`unit_fn` hook lets a caller swap in a dishonest worker (training.adversary) or add
verification; `skip` drops units to model churn (the round averages those present).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from protocol.spec import JobSpec
from training.data import Dataset
from training.outer import OuterResult, initial_global_blob, outer_step, slot_state_from_output
from training.state import PARAM, select
from training.step import Trainer
from training.unit import GLOBAL, UnitResult, as_tensors, run_unit

UnitFn = Callable[[JobSpec, Dataset, int, int, bytes, "bytes | None"], UnitResult]
RoundHook = Callable[["RoundRecord"], None]


@dataclass(frozen=True)
class RoundRecord:
    round: int
    results: tuple[UnitResult, ...]
    outer: OuterResult
    eval_loss: float          # mean val loss of G_{r+1} (nats/token), NaN if eval disabled
    seconds: float


@dataclass
class JobRun:
    spec: JobSpec
    globals: list[bytes] = field(default_factory=list)   # G_0 .. G_R blobs
    rounds: list[RoundRecord] = field(default_factory=list)
    initial_eval_loss: float = float("nan")

    @property
    def final_global(self) -> bytes:
        return self.globals[-1]


def evaluate_global(spec: JobSpec, dataset: Dataset, global_ckpt: bytes, batches: int = 4,
                    trainer: Trainer | None = None) -> float:
    """Mean validation loss (nats/token) of a global checkpoint on fixed held-out batches."""
    tr = trainer or Trainer(spec)
    params = select(as_tensors(global_ckpt, GLOBAL), PARAM)
    with torch.no_grad():
        for n, p in params.items():
            tr.params[n].copy_(p)
    return tr.evaluate([dataset.val_batch(j, batch_size=spec.batch_size, seq_len=spec.seq_len)
                        for j in range(batches)])


def run_job(spec: JobSpec, dataset: Dataset, *, rounds: int | None = None, eval_batches: int = 4,
            unit_fn: UnitFn | None = None, skip: Callable[[int, int], bool] | None = None,
            on_round: RoundHook | None = None, initial: bytes | None = None) -> JobRun:
    """Run `rounds` (default spec.rounds) DiLoCo rounds in-process; returns every blob made.

    Call `set_determinism` first. eval_batches = 0 skips evaluation. `initial` (a
    `crowdtrain/global` blob) replaces the spec's G_0, e.g. to continue from a checkpoint.
    """
    run = JobRun(spec)
    g = initial if initial is not None else initial_global_blob(spec)
    run.globals.append(g)
    tr = Trainer(spec)
    if eval_batches:
        run.initial_eval_loss = evaluate_global(spec, dataset, g, eval_batches, tr)
    slots: dict[int, bytes] = {}
    momentum: bytes | None = None
    for r in range(rounds if rounds is not None else spec.rounds):
        t0 = time.perf_counter()
        results = []
        for k in range(spec.units_per_round):
            if skip is not None and skip(r, k):
                continue
            if unit_fn is not None:
                res = unit_fn(spec, dataset, r, k, g, slots.get(k))
            else:
                res = run_unit(spec, dataset, r, k, g, slots.get(k), trainer=tr)
            results.append(res)
        outer = outer_step(spec, g, [(res.unit, res.output_blob) for res in results], momentum)
        for res in results:
            slots[res.unit] = slot_state_from_output(res.output_blob)
        g, momentum = outer.global_blob, outer.momentum_blob
        run.globals.append(g)
        loss = evaluate_global(spec, dataset, g, eval_batches, tr) if eval_batches else float("nan")
        rec = RoundRecord(r, tuple(results), outer, loss, time.perf_counter() - t0)
        run.rounds.append(rec)
        if on_round:
            on_round(rec)
    return run
