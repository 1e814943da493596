"""Jobs and rounds: registration against the chain, round opening and closing, deadlines.

A job enters the coordinator when someone registers it with its spec: the chain is the
authority (the job must exist on the Market, name this coordinator when one is
configured, and its specHash must be the spec's canonical hash), so any signed account may
register it. Round r closes as `complete` when all K units are accepted, or as `quorum` at
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
from coordinator.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from coordinator.models import Job, Round
from protocol.hashing import to_hex
from protocol.spec import JobSpec, SpecError, spec_from_dict, spec_from_json

MAX_JOB_ID = 2**63 - 1


def load_job_spec(ctx: Context, job: Job) -> JobSpec:
    data = ctx.blobs.read_bytes(job.spec_blob)
    if data is None:
        raise NotFoundError(f"spec blob {job.spec_blob} of job {job.id} is missing from the blob store")
    return spec_from_json(data)


def register_job(ctx: Context, *, job_id: int, spec_obj: dict[str, Any]) -> tuple[Job, bool]:
    """Register chain job `job_id` with its spec; returns (job, created). Idempotent for the
    same spec; raises InvalidInputError / NotFoundError / ForbiddenError / ConflictError."""
    if job_id > MAX_JOB_ID:
        raise InvalidInputError(f"job id {job_id} is larger than this coordinator supports (2^63 - 1)")
    try:
        spec = spec_from_dict(spec_obj, "request body 'spec'")
    except SpecError as e:
        raise InvalidInputError(str(e)) from None
    spec_hash = to_hex(spec.spec_hash())
    gw = ctx.gateway
    chain_job = gw.get_job(job_id)
    if chain_job is None:
        raise NotFoundError(f"job {job_id} does not exist on chain {gw.chain_id} (Market {gw.market_address}); "
                            "post it on chain first")
    if chain_job.status != 1:
        raise ConflictError(f"job {job_id} is not open on chain (status {chain_job.status}); nothing to schedule")
    want = ctx.settings.coordinator_address
    if want is not None and chain_job.coordinator != want:
        raise ForbiddenError(f"job {job_id} names coordinator {chain_job.coordinator}, this coordinator is {want}")
    if chain_job.spec_hash.lower() != spec_hash:
        raise InvalidInputError(f"the spec hashes to {spec_hash} but job {job_id} on chain has specHash "
                                f"{chain_job.spec_hash}: send the exact spec that was posted")
    if chain_job.reward_per_unit != spec.payment.reward_per_unit:
        raise InvalidInputError(f"spec reward_per_unit {spec.payment.reward_per_unit} differs from the chain's "
                                f"{chain_job.reward_per_unit}")
    if chain_job.max_units < spec.max_units:
        raise InvalidInputError(f"spec needs {spec.max_units} units (K*R) but the chain job allows {chain_job.max_units}")
    now = ctx.now()
    if chain_job.deadline <= now:
        raise ConflictError(f"job {job_id}'s deadline {chain_job.deadline} has passed")

    with ctx.transaction() as tx:
        existing = crud.get_job(tx.session, job_id=job_id)
    if existing is not None:
        if existing.spec_hash != spec_hash:
            raise ConflictError(f"job {job_id} is already registered with spec {existing.spec_hash}")
        return existing, False

    spec_blob, _ = ctx.blobs.put_bytes(spec.canonical_bytes())
    try:
        with ctx.transaction() as tx:
            s = tx.session
            crud.record_blob(s, sha256=spec_blob, size=len(spec.canonical_bytes()), uploader=None, now=now)
            job = crud.create_job(s, job_id=job_id, spec_hash=spec_hash, spec_blob=spec_blob, owner=chain_job.owner,
                                  rounds_total=spec.rounds, units_per_round=spec.units_per_round,
                                  reward_per_unit=spec.payment.reward_per_unit, now=now)
            s.flush()
            rnd = crud.create_round(s, job_id=job_id, round=0, units=spec.units_per_round, checkpoint_blob=None,
                                    slot_states=None, now=now, deadline=now + ctx.settings.round_timeout_s)
            tx.emit("job.registered", job_id, {"spec_hash": spec_hash, "owner": chain_job.owner,
                                                "rounds": spec.rounds, "units_per_round": spec.units_per_round}, now=now)
            tx.emit("round.opened", job_id, {"round": 0, "units": rnd.units, "checkpoint": None}, now=now)
    except IntegrityError:  # another process registered it between our check and insert
        with ctx.transaction() as tx:
            job2 = crud.get_job(tx.session, job_id=job_id)
        if job2 is None or job2.spec_hash != spec_hash:
            raise ConflictError(f"job {job_id} was registered concurrently with another spec") from None
        return job2, False
    seed_round(ctx, job_id=job_id, round=0)
    return job, True


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
