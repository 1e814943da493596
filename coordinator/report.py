"""A job's training report (`GET /jobs/{id}/report`): losses per round, units, workers,
and the chain receipts behind every figure (roots, commit/finalize/claim transactions).

Training losses come from the accepted units' traces (each trace leaf holds its inner
step's loss, docs/protocol.md "Trace leaf"); the validation loss is the coordinator's
score of G_{r+1} after the outer step (`rounds.val_loss`, when the dataset has a val
split). Claims are read from the indexed `Claimed` events. Traces are immutable blobs, so
their loss summaries are cached per process.
"""
from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from coordinator import crud
from coordinator.context import Context
from coordinator.models import ChainEvent, Job
from coordinator.settlement import round_leaves
from protocol.hashing import to_hex
from protocol.wire import JobReport, ReportRound, ReportUnit, ReportWorker

_CACHE: dict[str, tuple[float, float, float]] = {}
_LOCK = threading.Lock()
MAX_CACHED = 100_000


def trace_losses(ctx: Context, trace_blob: str) -> tuple[float, float, float] | None:
    """(first step's loss, last step's loss, mean over steps) of a stored trace, nats/token;
    None when the blob is missing or unreadable (an accepted trace always parses)."""
    with _LOCK:
        hit = _CACHE.get(trace_blob)
    if hit is not None:
        return hit
    from training.trace import Trace, TraceError  # torch-free module

    data = ctx.blobs.read_bytes(trace_blob)
    try:
        losses = [leaf.loss for leaf in Trace.from_json(data).leaves] if data is not None else []
    except (TraceError, UnicodeDecodeError):
        losses = []
    if not losses:
        return None
    out = (losses[0], losses[-1], sum(losses) / len(losses))
    with _LOCK:
        if len(_CACHE) > MAX_CACHED:
            _CACHE.clear()
        _CACHE[trace_blob] = out
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def build_report(ctx: Context, s: Any, job: Job) -> JobReport:
    reward = int(job.reward_per_unit)
    claims: dict[str, tuple[str, str, int]] = {}  # leaf -> (tx, worker, amount)
    for tx_hash, args in s.execute(select(ChainEvent.tx_hash, ChainEvent.args).where(
            ChainEvent.job_id == job.id, ChainEvent.name == "Claimed")):
        claims[str(args["leaf"]).lower()] = (tx_hash, str(args["worker"]), int(args["amount"]))
    workers: dict[str, dict[str, int]] = {}
    rounds = []
    for rnd in crud.list_rounds(s, job_id=job.id):
        units, firsts, lasts, means = [], [], [], []
        for row in round_leaves(s, job=job, rnd=rnd):
            summary = trace_losses(ctx, row.result.trace_blob)
            first, last = (summary[0], summary[1]) if summary else (None, None)
            if summary:
                firsts.append(summary[0])
                lasts.append(summary[1])
                means.append(summary[2])
            committed = rnd.committed_root is not None
            leaf = to_hex(row.leaf) if committed else None
            claim = claims.get(leaf or "")
            units.append(ReportUnit(unit=row.unit.index, unit_id=row.unit.id, worker=row.result.worker,
                                    result_id=row.result.id, result_hash=row.result.result_hash, leaf=leaf,
                                    loss_first=first, loss_last=last, revoked_by_dispute=row.unit.revoked_by_dispute,
                                    claim_tx=claim[0] if claim else None))
            w = workers.setdefault(row.result.worker, {"accepted": 0, "revoked": 0, "earned": 0, "claimed": 0})
            w["accepted"] += 1
            if row.unit.revoked_by_dispute is not None:
                w["revoked"] += 1
            elif committed:
                w["earned"] += reward
            if claim:
                w["claimed"] += claim[2]
        accepted = rnd.accepted if rnd.status != "open" else len(units)
        rounds.append(ReportRound(
            round=rnd.round, status=rnd.status, units=rnd.units, accepted=accepted,  # type: ignore[arg-type]
            train_loss_first=_mean(firsts), train_loss_last=_mean(lasts), train_loss_mean=_mean(means),
            val_loss=rnd.val_loss, checkpoint=rnd.checkpoint_blob, root=rnd.committed_root,
            total=rnd.committed_total, settle_state=rnd.settle_state,  # type: ignore[arg-type]
            commit_tx=rnd.commit_tx, finalize_tx=rnd.finalize_tx, unit_results=units))
    return JobReport(
        job_id=job.id, spec_hash=job.spec_hash, owner=job.owner, coordinator=job.coordinator,
        status=job.status, chain_status=job.chain_status,  # type: ignore[arg-type]
        rounds_total=job.rounds_total, units_per_round=job.units_per_round, reward_per_unit=job.reward_per_unit,
        register_tx=job.register_tx, complete_tx=job.complete_tx, final_model=job.final_model_blob, rounds=rounds,
        workers=[ReportWorker(worker=w, units_accepted=v["accepted"], units_revoked=v["revoked"],
                              earned=str(v["earned"]), claimed=str(v["claimed"]))
                 for w, v in sorted(workers.items())])
