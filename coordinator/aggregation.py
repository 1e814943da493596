"""The outer step: when a round closes, G_{r+1} is computed from its accepted units and
round r+1 opens with it (docs/coordinator.md, "Rounds and jobs").

`Aggregator.aggregate(AggregationInput) -> AggregationOutput` is the seam;
`TrainingAggregator` runs `training.outer.outer_step` (CPU fp32, deterministic on any
machine) in the compute pool. Slot k's state for round r+1 is the optimizer state of slot
k's accepted unit in round r, or its previous state when round r closed without it.

Exactly one process aggregates a round: a Redis lock `P:agg:<job>:<round>` (with a TTL, so
a crashed aggregator is retried by the next sweep) and `open_round`'s conditional update
guard it. Outputs are stored as blobs before the round opens, so a worker granted a unit
of round r+1 can always fetch G_{r+1}.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select

from coordinator import crud
from coordinator.compute import ComputePool
from coordinator.context import Context
from coordinator.errors import ConflictError, UnavailableError
from coordinator.jobs import open_round
from coordinator.models import Result, Unit

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AggregationInput:
    spec_json: bytes
    round: int
    checkpoint: Path | None  # G_r; None = G_0 from the spec seed
    momentum: Path | None  # outer momentum entering round r; None = first outer step
    outputs: tuple[tuple[int, Path], ...]  # (slot index, output blob) of the accepted units


@dataclass(frozen=True)
class AggregationOutput:
    global_blob: bytes
    momentum_blob: bytes
    slot_states: dict[int, bytes]  # new optimizer state of each aggregated slot


class Aggregator(Protocol):
    def aggregate(self, a: AggregationInput) -> AggregationOutput: ...


class TrainingAggregator:
    def __init__(self, pool: ComputePool, *, timeout_s: float = 600.0) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    def aggregate(self, a: AggregationInput) -> AggregationOutput:
        return self.pool.run(outer, a, timeout_s=self.timeout_s, what="the outer step")

    def close(self) -> None:
        self.pool.close()


def outer(a: AggregationInput) -> AggregationOutput:
    """Runs in the spawned child."""
    from protocol.spec import spec_from_json
    from training.outer import initial_global_blob, outer_step, slot_state_from_output

    spec = spec_from_json(a.spec_json)
    g = a.checkpoint.read_bytes() if a.checkpoint else initial_global_blob(spec)
    outputs = [(k, p.read_bytes()) for k, p in a.outputs]
    res = outer_step(spec, g, outputs, a.momentum.read_bytes() if a.momentum else None)
    return AggregationOutput(res.global_blob, res.momentum_blob, {k: slot_state_from_output(b) for k, b in outputs})


def aggregate_round(ctx: Context, *, job_id: int, round: int) -> bool:
    """Run the outer step of closed round `round` and open round + 1; True when this call
    opened it. Safe to call from any process, any number of times."""
    agg = ctx.aggregator
    if agg is None:
        return False
    r = ctx.redis.sync
    key, token = f"{ctx.settings.redis_prefix}:agg:{job_id}:{round}", uuid.uuid4().hex
    if not r.set(key, token, nx=True, ex=int(ctx.settings.verify_timeout_s) + 60):
        return False  # another process is on it
    try:
        with ctx.transaction() as tx:
            s = tx.session
            job = crud.get_job(s, job_id=job_id)
            rnd = crud.get_round(s, job_id=job_id, round=round)
            if job is None or rnd is None or job.status != "awaiting_aggregation" or job.current_round != round:
                return False
            rows = s.execute(select(Unit.index, Result.output_hash).join(Result, Unit.accepted_result_id == Result.id)
                             .where(Unit.round_id == rnd.id, Unit.status == "accepted").order_by(Unit.index)).all()
            prev_slots = {u.index: u.slot_state_blob for u in crud.list_units(s, round_id=rnd.id)}
            spec_blob, checkpoint, momentum, units = job.spec_blob, rnd.checkpoint_blob, rnd.momentum_blob, job.units_per_round
        path = ctx.blobs.path
        out = agg.aggregate(AggregationInput(
            spec_json=ctx.blobs.path(spec_blob).read_bytes(), round=round,
            checkpoint=path(checkpoint) if checkpoint else None, momentum=path(momentum) if momentum else None,
            outputs=tuple((k, path(h)) for k, h in rows)))
        stored = {}
        for name, data in [("global", out.global_blob), ("momentum", out.momentum_blob),
                           *((f"slot{k}", b) for k, b in out.slot_states.items())]:
            stored[name] = ctx.blobs.put_bytes(data)[0]
        now = ctx.now()
        with ctx.transaction() as tx:
            for name, data in [("global", out.global_blob), ("momentum", out.momentum_blob),
                               *((f"slot{k}", b) for k, b in out.slot_states.items())]:
                crud.record_blob(tx.session, sha256=stored[name], size=len(data), uploader=None, now=now)
            tx.emit("round.aggregated", job_id, {"round": round, "units": [k for k, _ in rows],
                                                 "checkpoint": stored["global"], "momentum": stored["momentum"]}, now=now)
        slots: list[str | None] = [stored.get(f"slot{k}", prev_slots.get(k)) for k in range(units)]
        try:
            open_round(ctx, job_id=job_id, round=round + 1, checkpoint_blob=stored["global"], slot_states=slots,
                       momentum_blob=stored["momentum"])
        except ConflictError:  # opened meanwhile by a process whose lock had expired
            return False
        return True
    finally:
        if r.get(key) == token.encode():
            r.delete(key)


def aggregate_safely(ctx: Context, *, job_id: int, round: int) -> None:
    """aggregate_round for background use: failures are logged; the sweeper retries."""
    try:
        aggregate_round(ctx, job_id=job_id, round=round)
    except UnavailableError as e:
        log.warning("outer step of job %s round %s postponed: %s", job_id, round, e)
    except Exception:
        log.exception("outer step of job %s round %s failed; the sweeper will retry", job_id, round)


def pending_aggregations(ctx: Context) -> list[tuple[int, int]]:
    """(job, round) pairs whose round closed and whose next round is not open yet."""
    from coordinator.models import Job

    with ctx.sessions() as s:
        return [(j.id, j.current_round) for j in s.scalars(select(Job).where(Job.status == "awaiting_aggregation"))]
