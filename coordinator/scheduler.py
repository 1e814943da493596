"""Claim, heartbeat, release, and the lease sweep (docs/coordinator.md, "Leases").

Redis decides who holds what (coordinator/leases.py, atomic); the database records it
afterwards (lease history, unit status) for the API and the dashboard. If the database
write after a grant fails, the grant is released again so Redis and the database never
disagree about a unit for longer than one request.
"""
from __future__ import annotations

import uuid
from typing import Sequence

from sqlalchemy import select

from coordinator import crud
from coordinator.context import Context
from coordinator.errors import ConflictError, ForbiddenError, GoneError, NotFoundError
from coordinator.jobs import seed_round, sweep_deadlines
from coordinator.leases import LeaseAnswer
from coordinator.models import Job, Round, Unit
from protocol.wire import LeaseGrant, LeaseStatus, UnitInputs

JOB_STATE_HINT = {
    "awaiting_aggregation": "its current round is closed and the next one opens after the outer step",
    "complete": "all its rounds are done",
    "held": "it is on hold",
}


def record_reaped(ctx: Context, reaped: Sequence[tuple[str, int]], *, reason: str = "expired") -> None:
    """Write down leases Redis expired: lease history, and the unit back to `queued` unless
    something newer (another lease, an acceptance) already moved it."""
    if not reaped:
        return
    now = ctx.now()
    with ctx.transaction(durable=False) as tx:
        crud.end_leases(tx.session, lease_ids=[lid for lid, _ in reaped], reason=reason, now=now)
        for lid, unit_id in reaped:
            crud.set_unit_status(tx.session, unit_ids=[unit_id], status="queued", only_if_lease=lid, current_lease=None)
            unit = crud.get_unit(tx.session, unit_id=unit_id)
            tx.emit("lease.expired", unit.job_id if unit else None, {"lease_id": lid, "unit_id": unit_id}, now=now)


def claim(ctx: Context, *, worker: str, job_id: int) -> LeaseGrant | None:
    """A lease on the job's next queued unit; the worker's live lease if it has one; None
    when no unit is free right now (try again later)."""
    ttl = ctx.settings.lease_ttl_s
    brief = ctx.job_brief(job_id)
    if brief is None:
        raise NotFoundError(f"job {job_id} is not registered with this coordinator")
    if brief.status != "active":
        raise ConflictError(f"job {job_id} has no units to hand out: {JOB_STATE_HINT.get(brief.status, brief.status)}"
                            + (f" ({brief.hold_reason})" if brief.hold_reason else ""))
    lease_id = uuid.uuid4().hex
    out = ctx.leases.claim(job_id=job_id, round=brief.current_round, worker=worker, lease_id=lease_id, ttl_s=ttl)
    if out.status == "unseeded":
        seed_round(ctx, job_id=job_id, round=brief.current_round)
        out = ctx.leases.claim(job_id=job_id, round=brief.current_round, worker=worker, lease_id=lease_id, ttl_s=ttl)
    record_reaped(ctx, out.reaped)
    if out.status in ("empty", "unseeded"):
        return None
    assert out.unit_id is not None and out.lease_id is not None and out.expires_at is not None
    now = ctx.now()
    try:
        # lease history mirrors Redis (the truth for live leases): no need to wait for the WAL flush
        with ctx.transaction(durable=False) as tx:
            s = tx.session
            row = s.execute(select(Unit, Round.checkpoint_blob, Job.spec_hash).join(Round, Unit.round_id == Round.id)
                            .join(Job, Unit.job_id == Job.id).where(Unit.id == out.unit_id)).one_or_none()
            assert row is not None, f"Redis queued unit {out.unit_id} that the database does not have"
            unit, checkpoint, spec_hash = row
            if out.status == "granted":
                if not crud.mark_unit_leased(s, unit_id=unit.id, lease_id=out.lease_id):
                    raise _UnitClosed  # cancelled between the database commit and Redis catching up
                crud.create_lease(s, lease_id=out.lease_id, unit_id=unit.id, worker=worker, now=now,
                                  expires_at=out.expires_at)
                if ctx.should_touch_worker(worker, now):
                    crud.touch_worker(s, address=worker, now=now)
                tx.emit("lease.granted", job_id, {"lease_id": out.lease_id, "unit_id": unit.id, "round": unit.round,
                                                  "unit": unit.index, "worker": worker}, now=now)
            grant = LeaseGrant(lease_id=out.lease_id, unit_id=unit.id, job_id=job_id, round=unit.round, unit=unit.index,
                               spec_hash=spec_hash, inputs=UnitInputs(checkpoint=checkpoint,
                                                                      slot_state=unit.slot_state_blob),
                               expires_at=out.expires_at, ttl_s=ttl)
    except _UnitClosed:  # the database closed the unit (quorum) before Redis retired it: retire it now
        ctx.leases.retire(job_id=job_id, unit_ids=[out.unit_id])  # also ends the lease just granted
        return claim(ctx, worker=worker, job_id=job_id)  # bounded: each pass retires one unit
    except BaseException:
        if out.status == "granted":  # undo in Redis what the database could not record
            ctx.leases.release(lease_id=out.lease_id, worker=worker)
        raise
    return grant


class _UnitClosed(Exception):
    """The granted unit is accepted or cancelled in the database."""


def _raise_for(ans: LeaseAnswer, *, lease_id: str, worker: str) -> None:
    if ans.status == "ok":
        return
    if ans.status == "unknown":
        raise NotFoundError(f"lease {lease_id} is not live: it ended (result submitted, released, or expired and "
                            "reaped) or never existed; claim a new unit")
    if ans.status == "not_holder":
        raise ForbiddenError(f"lease {lease_id} is held by {ans.value}, not by {worker}")
    if ans.status == "expired":
        raise GoneError(f"lease {lease_id} expired at {int(ans.value) / 1000:.3f} (unix s); unit {ans.unit_id} went "
                        "back to the queue; heartbeat more often than the lease TTL and claim again")
    if ans.status == "wrong_unit":
        raise ConflictError(f"lease {lease_id} is for unit {ans.unit_id}, not this one")
    if ans.status == "state_submitting":
        raise ConflictError(f"lease {lease_id} has already submitted its result, which is being verified")
    raise ConflictError(f"lease {lease_id}: {ans.status}")


def heartbeat(ctx: Context, *, worker: str, lease_id: str) -> LeaseStatus:
    ans = ctx.leases.heartbeat(lease_id=lease_id, worker=worker, ttl_s=ctx.settings.lease_ttl_s)
    if ans.status == "expired":  # the script reaped it: record that
        record_reaped(ctx, [(lease_id, ans.unit_id or 0)])
    _raise_for(ans, lease_id=lease_id, worker=worker)
    assert ans.unit_id is not None
    return LeaseStatus(lease_id=lease_id, unit_id=ans.unit_id, expires_at=int(ans.value) / 1000.0)


def release(ctx: Context, *, worker: str, lease_id: str) -> None:
    """Give the unit back before the lease expires (the worker cannot finish it)."""
    ans = ctx.leases.release(lease_id=lease_id, worker=worker)
    if ans.status == "expired":
        record_reaped(ctx, [(lease_id, ans.unit_id or 0)])
    _raise_for(ans, lease_id=lease_id, worker=worker)
    now = ctx.now()
    with ctx.transaction(durable=False) as tx:
        crud.end_leases(tx.session, lease_ids=[lease_id], reason="released", now=now)
        crud.set_unit_status(tx.session, unit_ids=[ans.unit_id or 0], status="queued", only_if_lease=lease_id,
                             current_lease=None)
        unit = crud.get_unit(tx.session, unit_id=ans.unit_id or 0)
        tx.emit("lease.released", unit.job_id if unit else None, {"lease_id": lease_id, "unit_id": ans.unit_id}, now=now)


def sweep(ctx: Context) -> None:
    """One pass of the background sweeper: reap expired leases of active jobs, re-seed a
    round whose queue Redis lost, close or extend rounds past their deadline, re-check held
    jobs, run outer steps that are due (after a quorum close, or retrying a failed one)."""
    with ctx.sessions() as s:
        jobs = crud.active_jobs_rounds(s)
    for job_id, current in jobs:
        if not ctx.leases.is_seeded(job_id=job_id, round=current):
            seed_round(ctx, job_id=job_id, round=current)
        record_reaped(ctx, ctx.leases.reap(job_id=job_id))
    sweep_deadlines(ctx)
    from coordinator.admission import refresh_held

    refresh_held(ctx)
    if ctx.aggregator is not None:
        from coordinator.aggregation import aggregate_safely, pending_aggregations

        for job_id, round in pending_aggregations(ctx):
            aggregate_safely(ctx, job_id=job_id, round=round)
