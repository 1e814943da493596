"""The outer step: when a round closes, G_{r+1} is computed from its accepted units and
round r+1 opens with it; after the last round, G_R is stored as the job's final model
(`GET /jobs/{id}/model`). When the job's dataset has a val split, G_{r+1} is also scored
(`eval_batches` fixed held-out batches, training.job.evaluate_global): `rounds.val_loss`
(docs/coordinator.md, "Rounds and jobs").

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

from sqlalchemy import and_, or_, select, update

from coordinator import crud
from coordinator.compute import ComputePool
from coordinator.context import Context
from coordinator.errors import ConflictError, UnavailableError
from coordinator.jobs import open_round
from coordinator.models import Job, Result, Round, Unit

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AggregationInput:
    spec_json: bytes
    round: int
    checkpoint: Path | None  # G_r; None = G_0 from the spec seed
    momentum: Path | None  # outer momentum entering round r; None = first outer step
    outputs: tuple[tuple[int, Path], ...]  # (slot index, output blob) of the accepted units
    dataset_dir: Path | None = None  # packed dataset: score G_{r+1} on its val split
    eval_batches: int = 0  # 0 = no validation loss


@dataclass(frozen=True)
class AggregationOutput:
    global_blob: bytes
    momentum_blob: bytes
    slot_states: dict[int, bytes]  # new optimizer state of each aggregated slot
    val_loss: float | None = None  # mean validation loss of G_{r+1}, nats/token


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
    val = None
    if a.dataset_dir is not None and a.eval_batches > 0:
        import math

        from training.data import load_dataset
        from training.determinism import set_determinism
        from training.job import evaluate_global

        set_determinism(spec.seed, spec.threads, spec.device)
        val = evaluate_global(spec, load_dataset(a.dataset_dir, expected_hash=spec.dataset), res.global_blob,
                              a.eval_batches)
        val = val if math.isfinite(val) else None
    return AggregationOutput(res.global_blob, res.momentum_blob, {k: slot_state_from_output(b) for k, b in outputs},
                             val)


def aggregate_round(ctx: Context, *, job_id: int, round: int) -> bool:
    """Run the outer step of closed round `round`: open round + 1 with G_{r+1}, or, after
    the job's last round, store G_R as the job's final model. True when this call did it.
    Safe to call from any process, any number of times."""
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
            if job is None or rnd is None or job.current_round != round or job.rounds_total is None:
                return False
            last = round + 1 >= job.rounds_total
            if not (job.status == "awaiting_aggregation" or (last and job.status == "complete"
                                                              and job.final_model_blob is None)):
                return False
            rows = s.execute(select(Unit.index, Result.output_hash).join(Result, Unit.accepted_result_id == Result.id)
                             .where(Unit.round_id == rnd.id, Unit.status == "accepted").order_by(Unit.index)).all()
            prev_slots = {u.index: u.slot_state_blob for u in crud.list_units(s, round_id=rnd.id)}
            spec_blob, checkpoint, momentum, units = job.spec_blob, rnd.checkpoint_blob, rnd.momentum_blob, job.units_per_round
            assert spec_blob is not None and units is not None
        path = ctx.blobs.path
        spec_json = path(spec_blob).read_bytes()
        out = agg.aggregate(AggregationInput(
            spec_json=spec_json, round=round,
            checkpoint=path(checkpoint) if checkpoint else None, momentum=path(momentum) if momentum else None,
            outputs=tuple((k, path(h)) for k, h in rows), dataset_dir=_dataset_dir(ctx, spec_json),
            eval_batches=ctx.settings.eval_batches))
        stored = {}
        for name, data in [("global", out.global_blob), ("momentum", out.momentum_blob),
                           *((f"slot{k}", b) for k, b in out.slot_states.items())]:
            stored[name] = ctx.blobs.put_bytes(data)[0]
        now = ctx.now()
        with ctx.transaction() as tx:
            s = tx.session
            for name, data in [("global", out.global_blob), ("momentum", out.momentum_blob),
                               *((f"slot{k}", b) for k, b in out.slot_states.items())]:
                crud.record_blob(s, sha256=stored[name], size=len(data), uploader=None, now=now)
            s.execute(update(Round).where(Round.id == rnd.id).values(val_loss=out.val_loss))
            tx.emit("round.aggregated", job_id, {"round": round, "units": [k for k, _ in rows],
                                                 "checkpoint": stored["global"], "momentum": stored["momentum"],
                                                 "val_loss": out.val_loss}, now=now)
            if last:
                done = s.execute(update(Job).where(Job.id == job_id, Job.final_model_blob.is_(None))
                                 .values(final_model_blob=stored["global"])).rowcount
                if done:
                    tx.emit("job.model_ready", job_id, {"model": stored["global"], "rounds": round + 1}, now=now)
                return bool(done)
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


def _dataset_dir(ctx: Context, spec_json: bytes) -> Path | None:
    """The job's packed dataset for the validation loss, or None (no loss) when it is absent."""
    if ctx.settings.eval_batches <= 0:
        return None
    from coordinator.datasets import materialize
    from protocol.spec import spec_from_json

    try:
        return materialize(ctx.blobs.path, ctx.settings.resolved_datasets_dir, spec_from_json(spec_json).dataset)
    except UnavailableError:
        return None


def aggregate_safely(ctx: Context, *, job_id: int, round: int) -> None:
    """aggregate_round for background use: failures are logged; the sweeper retries."""
    try:
        aggregate_round(ctx, job_id=job_id, round=round)
    except UnavailableError as e:
        log.warning("outer step of job %s round %s postponed: %s", job_id, round, e)
    except Exception:
        log.exception("outer step of job %s round %s failed; the sweeper will retry", job_id, round)


def pending_aggregations(ctx: Context) -> list[tuple[int, int]]:
    """(job, round) pairs whose round closed and whose outer step has not run yet: the next
    round is not open, or the job's last round has no final model."""
    with ctx.sessions() as s:
        q = select(Job.id, Job.current_round).where(or_(Job.status == "awaiting_aggregation",
                                                        and_(Job.status == "complete", Job.final_model_blob.is_(None))))
        return [(int(j), int(r)) for j, r in s.execute(q)]
