"""Data access: keyword-only functions over a SQLAlchemy session; None means "not found".

Callers own the transaction (commit/rollback). Nothing hot is a shared counter: a round's
accepted units are counted from `units` (index on round_id, status) instead of bumping a
column every submission would queue on; `rounds.accepted` is written once, when the round
closes. State transitions that must happen once (closing a round) are conditional UPDATEs
whose row count says whether this caller won.
"""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coordinator.models import Blob, Event, Job, Lease, Result, Round, Unit, Worker


# -- jobs -------------------------------------------------------------------------------
def get_job(session: Session, *, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, *, limit: int, offset: int) -> Sequence[Job]:
    return session.scalars(select(Job).order_by(Job.id).limit(limit).offset(offset)).all()


def active_jobs_rounds(session: Session) -> list[tuple[int, int]]:
    """(job id, current round) of every active job."""
    return [(int(i), int(r)) for i, r in session.execute(select(Job.id, Job.current_round).where(Job.status == "active"))]


def create_job(session: Session, *, job_id: int, spec_hash: str, spec_blob: str, owner: str, rounds_total: int,
               units_per_round: int, reward_per_unit: int, now: float) -> Job:
    job = Job(id=job_id, spec_hash=spec_hash, spec_blob=spec_blob, owner=owner, status="active", hold_reason=None,
              rounds_total=rounds_total, units_per_round=units_per_round, current_round=0,
              reward_per_unit=str(reward_per_unit), registered_at=now)
    session.add(job)
    return job


# -- rounds -----------------------------------------------------------------------------
def get_round(session: Session, *, job_id: int, round: int) -> Round | None:
    return session.scalar(select(Round).where(Round.job_id == job_id, Round.round == round))


def list_rounds(session: Session, *, job_id: int) -> Sequence[Round]:
    return session.scalars(select(Round).where(Round.job_id == job_id).order_by(Round.round)).all()


def create_round(session: Session, *, job_id: int, round: int, units: int, checkpoint_blob: str | None,
                 slot_states: Sequence[str | None] | None, now: float, deadline: float,
                 momentum_blob: str | None = None) -> Round:
    """A round and its `units` unit rows (slot states per slot index, None = fresh)."""
    rnd = Round(job_id=job_id, round=round, status="open", checkpoint_blob=checkpoint_blob, units=units, accepted=0,
                opened_at=now, deadline=deadline, momentum_blob=momentum_blob)
    session.add(rnd)
    session.flush()
    session.execute(Unit.__table__.insert(), [
        {"job_id": job_id, "round_id": rnd.id, "round": round, "index": k, "status": "queued", "attempts": 0,
         "slot_state_blob": slot_states[k] if slot_states else None}
        for k in range(units)
    ])
    return rnd


def _accepted_count(round_id: Any) -> Any:
    return (select(func.count()).select_from(Unit).where(Unit.round_id == round_id, Unit.status == "accepted")
            .scalar_subquery())


def count_accepted(session: Session, *, round_id: int) -> int:
    return int(session.scalar(select(_accepted_count(round_id))) or 0)


def accepted_by_round(session: Session, *, round_ids: Sequence[int]) -> dict[int, int]:
    rows = session.execute(select(Unit.round_id, func.count()).where(Unit.round_id.in_(round_ids),
                                                                    Unit.status == "accepted").group_by(Unit.round_id))
    return {rid: int(n) for rid, n in rows}


def close_round(session: Session, *, round_id: int, status: str, now: float, min_accepted: int) -> bool:
    """Close an open round as `status` when at least `min_accepted` units are accepted, and
    record that count. True only for the one caller whose UPDATE changed the row."""
    res = session.execute(update(Round).where(Round.id == round_id, Round.status == "open",
                                              _accepted_count(round_id) >= min_accepted)
                          .values(status=status, closed_at=now, accepted=_accepted_count(round_id)))
    return res.rowcount == 1


def open_rounds_past_deadline(session: Session, *, now: float) -> Sequence[Round]:
    return session.scalars(select(Round).where(Round.status == "open", Round.deadline <= now)).all()


# -- units ------------------------------------------------------------------------------
def get_unit(session: Session, *, unit_id: int) -> Unit | None:
    return session.get(Unit, unit_id)


def list_units(session: Session, *, round_id: int) -> Sequence[Unit]:
    return session.scalars(select(Unit).where(Unit.round_id == round_id).order_by(Unit.index)).all()


def unit_ids_with_status(session: Session, *, round_id: int, statuses: Sequence[str]) -> list[int]:
    return list(session.scalars(select(Unit.id).where(Unit.round_id == round_id, Unit.status.in_(statuses))
                                .order_by(Unit.id)))


OPEN_UNIT = ("queued", "leased", "verifying")


def set_unit_status(session: Session, *, unit_ids: Sequence[int], status: str,
                    only_if_lease: str | None = None, only_if_open: bool = False, **values: Any) -> int:
    """Set status (and other columns) of units; with `only_if_lease`, only where that lease
    is still the unit's current one; with `only_if_open`, only units not yet accepted or
    cancelled. Returns rows changed."""
    stmt = update(Unit).where(Unit.id.in_(unit_ids))
    if only_if_lease is not None:
        stmt = stmt.where(Unit.current_lease == only_if_lease)
    if only_if_open:
        stmt = stmt.where(Unit.status.in_(OPEN_UNIT))
    return session.execute(stmt.values(status=status, **values)).rowcount


def mark_unit_leased(session: Session, *, unit_id: int, lease_id: str) -> bool:
    """Record a grant; False when the unit was closed meanwhile (its round closed at quorum)."""
    return session.execute(update(Unit).where(Unit.id == unit_id, Unit.status.in_(("queued", "leased")))
                           .values(status="leased", current_lease=lease_id, attempts=Unit.attempts + 1)).rowcount == 1


# -- leases -----------------------------------------------------------------------------
def create_lease(session: Session, *, lease_id: str, unit_id: int, worker: str, now: float, expires_at: float) -> Lease:
    lease = Lease(id=lease_id, unit_id=unit_id, worker=worker, granted_at=now, expires_at=expires_at)
    session.add(lease)
    return lease


def get_lease(session: Session, *, lease_id: str) -> Lease | None:
    return session.get(Lease, lease_id)


def end_leases(session: Session, *, lease_ids: Sequence[str], reason: str, now: float) -> None:
    """Record the end of leases that have not ended yet (first reason wins)."""
    if lease_ids:
        session.execute(update(Lease).where(Lease.id.in_(lease_ids), Lease.ended_at.is_(None))
                        .values(ended_at=now, end_reason=reason))


def list_leases(session: Session, *, unit_id: int) -> Sequence[Lease]:
    return session.scalars(select(Lease).where(Lease.unit_id == unit_id).order_by(Lease.granted_at)).all()


# -- results ----------------------------------------------------------------------------
def create_result(session: Session, **fields: Any) -> Result:
    result = Result(**fields)
    session.add(result)
    session.flush()
    return result


def get_result(session: Session, *, result_id: int) -> Result | None:
    return session.get(Result, result_id)


def list_results(session: Session, *, unit_id: int) -> Sequence[Result]:
    return session.scalars(select(Result).where(Result.unit_id == unit_id).order_by(Result.id)).all()


# -- workers, blobs, events ----------------------------------------------------------------
def touch_worker(session: Session, *, address: str, now: float) -> None:
    """Record that `address` was seen (insert or bump last_seen)."""
    n = session.execute(update(Worker).where(Worker.address == address).values(last_seen=now)).rowcount
    if n == 0:
        try:
            with session.begin_nested():  # savepoint: a concurrent first sighting may insert first
                session.add(Worker(address=address, first_seen=now, last_seen=now))
        except IntegrityError:
            session.execute(update(Worker).where(Worker.address == address).values(last_seen=now))


def get_worker(session: Session, *, address: str) -> Worker | None:
    return session.get(Worker, address)


def record_blob(session: Session, *, sha256: str, size: int, uploader: str | None, now: float) -> bool:
    """Insert the blob row unless present; True when inserted."""
    if session.get(Blob, sha256) is not None:
        return False
    try:
        with session.begin_nested():  # savepoint: a concurrent upload of the same blob may insert first
            session.add(Blob(sha256=sha256, size=size, uploader=uploader, created_at=now))
    except IntegrityError:
        return False
    return True


def get_blob(session: Session, *, sha256: str) -> Blob | None:
    return session.get(Blob, sha256)


def add_event(session: Session, *, kind: str, job_id: int | None, data: dict[str, Any], now: float) -> Event:
    ev = Event(kind=kind, job_id=job_id, data=data, created_at=now)
    session.add(ev)
    return ev


def list_events(session: Session, *, job_id: int | None, after_id: int, limit: int) -> Sequence[Event]:
    stmt = select(Event).where(Event.id > after_id)
    if job_id is not None:
        stmt = stmt.where(Event.job_id == job_id)
    return session.scalars(stmt.order_by(Event.id).limit(limit)).all()


def count_units(session: Session, *, round_id: int, status: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Unit)
                              .where(Unit.round_id == round_id, Unit.status == status)) or 0)


def end_leases_of_units(session: Session, *, unit_ids: Sequence[int], reason: str, now: float) -> None:
    if unit_ids:
        session.execute(update(Lease).where(Lease.unit_id.in_(unit_ids), Lease.ended_at.is_(None))
                        .values(ended_at=now, end_reason=reason))
