"""Rounds: opening, closing, deadlines (jobs enter through coordinator/admission.py).

Round r closes as `complete` when all K units are accepted, or as `quorum` at
its deadline when at least ceil(quorum * K) are; a deadline without quorum is extended by
`round_timeout_s` (event `round.deadline_extended`). After a round closes the job waits in
`awaiting_aggregation` until the outer step opens round r+1 (`open_round`), or is
`complete` after its last round.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from coordinator import crud
from coordinator.context import Context
from coordinator.errors import ConflictError, InvalidInputError, NotFoundError
from coordinator.models import Job, Round
from protocol.spec import JobSpec, spec_from_json


def load_job_spec(ctx: Context, job: Job) -> JobSpec:
    data = ctx.blobs.read_bytes(job.spec_blob) if job.spec_blob else None
    if data is None:
        raise NotFoundError(f"spec blob {job.spec_blob} of job {job.id} is missing from the blob store")
    return spec_from_json(data)


def seed_round(ctx: Context, *, job_id: int, round: int) -> int | None:
    """Queue the round's units that still need a worker (once across processes)."""
    with ctx.transaction() as tx:
        rnd = crud.get_round(tx.session, job_id=job_id, round=round)
        if rnd is None or rnd.status != "open":
            ids: list[int] = []
        else:
            ids = crud.unit_ids_with_status(tx.session, round_id=rnd.id, statuses=("queued", "leased", "verifying"))
    return ctx.leases.seed(job_id=job_id, round=round, unit_ids=ids)


def open_round(ctx: Context, *, job_id: int, round: int, checkpoint_blob: str,
               slot_states: Sequence[str | None] | None = None, momentum_blob: str | None = None) -> Round:
    """Open round `round` (> 0) from the outer step's checkpoint G_r: the aggregator's entry
    point. Raises ConflictError unless the job is awaiting round `round` (so a second
    aggregator racing the first changes nothing)."""
    now = ctx.now()
    try:
        rnd = _open_round_tx(ctx, job_id=job_id, round=round, checkpoint_blob=checkpoint_blob,
                             slot_states=slot_states, momentum_blob=momentum_blob, now=now)
    except IntegrityError:  # the (job, round) row exists: another process opened it first
        raise ConflictError(f"job {job_id} round {round} was opened concurrently") from None
    seed_round(ctx, job_id=job_id, round=round)
    return rnd


def _open_round_tx(ctx: Context, *, job_id: int, round: int, checkpoint_blob: str,
                   slot_states: Sequence[str | None] | None, momentum_blob: str | None, now: float) -> Round:
    with ctx.transaction() as tx:
        s = tx.session
        job = crud.get_job(s, job_id=job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} is not registered")
        if job.status != "awaiting_aggregation" or job.current_round != round - 1 or round >= job.rounds_total:
            raise ConflictError(f"job {job_id} cannot open round {round}: it is {job.status} at round "
                                f"{job.current_round} of {job.rounds_total}")
        if not ctx.blobs.exists(checkpoint_blob):
            raise InvalidInputError(f"checkpoint blob {checkpoint_blob} is not in the blob store")
        if slot_states is not None and len(slot_states) != job.units_per_round:
            raise InvalidInputError(f"{len(slot_states)} slot states given, the job has {job.units_per_round} slots")
        rnd = crud.create_round(s, job_id=job_id, round=round, units=job.units_per_round,
                                checkpoint_blob=checkpoint_blob, slot_states=slot_states, now=now,
                                deadline=now + ctx.settings.round_timeout_s, momentum_blob=momentum_blob)
        moved = s.execute(update(Job).where(Job.id == job_id, Job.status == "awaiting_aggregation",
                                            Job.current_round == round - 1)
                          .values(status="active", current_round=round)).rowcount
        if moved != 1:
            raise ConflictError(f"job {job_id} round {round} was opened concurrently")
        ctx.forget_job(job_id)
        tx.emit("round.opened", job_id, {"round": round, "units": rnd.units, "checkpoint": checkpoint_blob}, now=now)
    return rnd


def _after_close(tx: Any, job: Job, rnd: Round, status: str, now: float) -> None:
    last = rnd.round + 1 >= job.rounds_total
    job.status = "complete" if last else "awaiting_aggregation"
    tx.emit("round.closed", job.id, {"round": rnd.round, "status": status, "accepted": rnd.accepted,
                                     "units": rnd.units}, now=now)
    if last:
        tx.emit("job.complete", job.id, {"rounds": job.rounds_total}, now=now)


def maybe_close_round(ctx: Context, *, job_id: int, round: int) -> str:
    """Close the round as `complete` when every unit is accepted; returns the round's status."""
    now = ctx.now()
    with ctx.transaction() as tx:
        s = tx.session
        rnd = crud.get_round(s, job_id=job_id, round=round)
        assert rnd is not None
        # count first (no lock): only the submission that completes the round tries the UPDATE
        if rnd.status == "open" and crud.count_accepted(s, round_id=rnd.id) >= rnd.units \
                and crud.close_round(s, round_id=rnd.id, status="complete", now=now, min_accepted=rnd.units):
            s.refresh(rnd)
            job = crud.get_job(s, job_id=job_id)
            assert job is not None
            _after_close(tx, job, rnd, "complete", now)
            ctx.forget_job(job_id)
        return rnd.status


def sweep_deadlines(ctx: Context) -> None:
    """Close rounds past their deadline at quorum, or extend their deadline."""
    now = ctx.now()
    with ctx.transaction() as tx:
        overdue = [(r.id, r.job_id, r.round, r.units) for r in crud.open_rounds_past_deadline(tx.session, now=now)]
    for round_id, job_id, round, units in overdue:
        quorum = math.ceil(ctx.settings.round_quorum * units)
        retired: list[int] = []
        with ctx.transaction() as tx:
            s = tx.session
            rnd = crud.get_round(s, job_id=job_id, round=round)
            assert rnd is not None
            if crud.close_round(s, round_id=round_id, status="quorum", now=now, min_accepted=quorum):
                s.refresh(rnd)
                retired = crud.unit_ids_with_status(s, round_id=round_id, statuses=("queued", "leased", "verifying"))
                crud.set_unit_status(s, unit_ids=retired, status="cancelled", current_lease=None)
                crud.end_leases_of_units(s, unit_ids=retired, reason="cancelled", now=now)
                job = crud.get_job(s, job_id=job_id)
                assert job is not None
                _after_close(tx, job, rnd, "quorum", now)
                ctx.forget_job(job_id)
            elif rnd.status == "open" and rnd.deadline <= now:
                rnd.deadline = now + ctx.settings.round_timeout_s
                tx.emit("round.deadline_extended", job_id, {"round": round,
                                                            "accepted": crud.count_accepted(s, round_id=round_id),
                                                            "quorum": quorum, "deadline": rnd.deadline}, now=now)
        if retired:
            ctx.leases.retire(job_id=job_id, unit_ids=retired)
