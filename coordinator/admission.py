"""Job intake: the chain says which jobs exist; a job is scheduled once its inputs are here.

A job row appears when the indexer sees `JobPosted` naming this coordinator (any job when
no coordinator address is configured), or when someone registers it (`POST /jobs`),
whichever comes first. It starts `held` and becomes `active` (round 0 opens) once every
check below passes; until then `hold_reason` says what is missing and what to do:
1. the chain job is open (a closed job is `closed`, not held) and its deadline is ahead;
2. the job names this coordinator (`Context.coordinator_address`: the key's address, or
   the configured `coordinator_address`);
3. the spec is in the blob store under the on-chain specHash (the owner uploads it, or
   `POST /jobs` stores it), parses, and is canonical: its canonical hash is the specHash;
4. the spec agrees with the chain job: rewardPerUnit, and maxUnits >= K*R;
5. the dataset (manifest + every shard) is present (coordinator/datasets.py).
The spec has no initial-checkpoint field: G_0 is `init_params(spec)`, computed anywhere.

`admit` re-checks a held job (after an owner upload, on registration, and every sweep);
its conditional UPDATE (`held` -> `active`) makes exactly one process open round 0.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from coordinator import crud
from coordinator.chain import ChainJob
from coordinator.context import Context
from coordinator.datasets import missing_reason
from coordinator.errors import ConflictError, InvalidInputError, NotFoundError
from coordinator.models import Job
from protocol.hashing import to_hex
from protocol.spec import JobSpec, SpecError, spec_from_dict, spec_from_json

log = logging.getLogger(__name__)
MAX_JOB_ID = 2**63 - 1
CHAIN_STATUS = {1: "open", 2: "completed", 3: "closed"}
MAX_SPEC_BYTES = 1 << 20


def track_chain_job(s: Any, *, job_id: int, owner: str, coordinator: str, spec_hash: str, reward_per_unit: int,
                    max_units: int, deadline: int, now: float, register_tx: str | None = None,
                    chain_status: str = "open") -> bool:
    """Insert a `held` row for a chain job (inside the caller's transaction), or fill in the
    chain fields of an existing row. True when the row was inserted."""
    job = crud.get_job(s, job_id=job_id)
    if job is None:
        try:
            with s.begin_nested():  # savepoint: a concurrent registration may insert first
                s.add(Job(id=job_id, spec_hash=spec_hash.lower(), spec_blob=None, owner=owner, status="held",
                          hold_reason="waiting for the admission check", rounds_total=None, units_per_round=None,
                          current_round=0, reward_per_unit=str(reward_per_unit), registered_at=now,
                          register_tx=register_tx, coordinator=coordinator, chain_status=chain_status,
                          max_units=str(max_units), deadline=deadline))
            return True
        except IntegrityError:
            job = crud.get_job(s, job_id=job_id)
            assert job is not None
    job.coordinator, job.max_units, job.deadline = coordinator, str(max_units), deadline
    job.register_tx = job.register_tx or register_tx
    job.chain_status = job.chain_status or chain_status
    return False


def load_spec(ctx: Context, job: Job) -> tuple[JobSpec | None, str | None]:
    """(spec, None) when the spec blob is stored, parses and is canonical; else (None, why)."""
    h = job.spec_hash
    path = ctx.blobs.path(h)
    if not path.is_file():
        return None, (f"waiting for the spec: upload its canonical JSON (blob {h}) with PUT /blobs/jobs/{job.id}/{h}, "
                      "or register it with POST /jobs")
    if path.stat().st_size > MAX_SPEC_BYTES:
        return None, f"spec blob {h} is larger than {MAX_SPEC_BYTES} bytes; it is not a job spec"
    try:
        spec = spec_from_json(path.read_bytes())
    except (SpecError, UnicodeDecodeError) as e:
        return None, f"spec blob {h} (the on-chain specHash) is not a valid job spec: {e}"
    got = to_hex(spec.spec_hash())
    if got != h:
        return None, (f"spec hash mismatch: the blob under the on-chain specHash {h} parses, but its canonical hash "
                      f"is {got}; the job must be posted with specHash = sha256(canonical spec), see protocol.spec")
    return spec, None


def readiness(ctx: Context, job: Job) -> tuple[JobSpec | None, str | None]:
    """(spec, None) when the job can be scheduled, else (spec or None, hold reason)."""
    ours = ctx.coordinator_address
    if ours is not None and job.coordinator is not None and job.coordinator != ours:
        return None, (f"wrong coordinator: the job names {job.coordinator} on chain, this coordinator commits from "
                      f"{ours}; the owner posts jobs with the address from GET /info")
    if job.deadline is not None and job.deadline <= ctx.now():
        return None, f"the chain job's deadline {job.deadline} (unix s) has passed; no round can be committed"
    spec, why = load_spec(ctx, job)
    if spec is None:
        return None, why
    if int(job.reward_per_unit) != spec.payment.reward_per_unit:
        return spec, (f"the spec pays {spec.payment.reward_per_unit} per unit but the chain job pays "
                      f"{job.reward_per_unit}")
    if job.max_units is not None and int(job.max_units) < spec.max_units:
        return spec, f"the spec needs {spec.max_units} units (K*R) but the chain job allows {job.max_units}"
    why = missing_reason(ctx.blobs.path, ctx.settings.resolved_datasets_dir, spec.dataset, job_id=job.id)
    return spec, why


def admit(ctx: Context, job_id: int) -> Job | None:
    """Re-check a held job; open round 0 when it passes, else record the hold reason
    (event `job.held` when it changed). Returns the job row (None when unknown)."""
    with ctx.sessions() as s:
        job = crud.get_job(s, job_id=job_id)
    if job is None or job.status != "held":
        return job
    spec, why = readiness(ctx, job)
    now = ctx.now()
    with ctx.transaction() as tx:
        s = tx.session
        if why is not None or spec is None:
            changed = s.execute(update(Job).where(Job.id == job_id, Job.status == "held",
                                                  Job.hold_reason.is_distinct_from(why))
                                .values(hold_reason=why)).rowcount
            if changed:
                tx.emit("job.held", job_id, {"reason": why}, now=now)
                log.info("job %s held: %s", job_id, why)
        else:
            moved = s.execute(update(Job).where(Job.id == job_id, Job.status == "held")
                              .values(status="active", hold_reason=None, spec_blob=job.spec_hash,
                                      rounds_total=spec.rounds, units_per_round=spec.units_per_round,
                                      current_round=0)).rowcount
            if moved == 1:
                crud.record_blob(s, sha256=job.spec_hash, size=len(spec.canonical_bytes()), uploader=None, now=now)
                rnd = crud.create_round(s, job_id=job_id, round=0, units=spec.units_per_round, checkpoint_blob=None,
                                        slot_states=None, now=now, deadline=now + ctx.settings.round_timeout_s)
                tx.emit("job.registered", job_id, {"spec_hash": job.spec_hash, "owner": job.owner,
                                                    "rounds": spec.rounds, "units_per_round": spec.units_per_round},
                        now=now)
                tx.emit("round.opened", job_id, {"round": 0, "units": rnd.units, "checkpoint": None}, now=now)
        ctx.forget_job(job_id)
    if why is None:
        from coordinator.jobs import seed_round

        seed_round(ctx, job_id=job_id, round=0)
    with ctx.sessions() as s:
        return crud.get_job(s, job_id=job_id)


def refresh_held(ctx: Context) -> None:
    """Re-check every held job (the sweeper calls this: uploads and configuration changes
    that happened elsewhere take effect within a sweep)."""
    with ctx.sessions() as s:
        held = list(s.scalars(select(Job.id).where(Job.status == "held")))
    for job_id in held:
        admit(ctx, job_id)


def register_job(ctx: Context, *, job_id: int, spec_obj: dict[str, Any]) -> tuple[Job, bool]:
    """`POST /jobs`: check the spec against the chain job, store it, admit the job.

    Returns (job, created). Refused when the chain disagrees: unknown job (NotFoundError),
    job not open or past its deadline (ConflictError), spec hash, reward or maxUnits
    differing (InvalidInputError), or a row already registered with another spec (ConflictError).
    A job naming another coordinator, or whose dataset is missing, is stored `held`.
    """
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
        raise ConflictError(f"job {job_id} is {CHAIN_STATUS.get(chain_job.status, chain_job.status)} on chain; "
                            "nothing to schedule")
    _check_against_chain(spec, spec_hash, chain_job)
    now = ctx.now()
    if chain_job.deadline <= now:
        raise ConflictError(f"job {job_id}'s deadline {chain_job.deadline} has passed")
    with ctx.sessions() as s:
        existing = crud.get_job(s, job_id=job_id)
    if existing is not None and existing.spec_hash != spec_hash:
        raise ConflictError(f"job {job_id} is already registered with spec {existing.spec_hash}")
    ctx.blobs.put_bytes(spec.canonical_bytes())  # its address is the specHash
    with ctx.transaction() as tx:
        created = track_chain_job(tx.session, job_id=job_id, owner=chain_job.owner, coordinator=chain_job.coordinator,
                                  spec_hash=spec_hash, reward_per_unit=chain_job.reward_per_unit,
                                  max_units=chain_job.max_units, deadline=chain_job.deadline, now=now)
    job = admit(ctx, job_id)
    assert job is not None
    return job, created


def _check_against_chain(spec: JobSpec, spec_hash: str, chain_job: ChainJob) -> None:
    job_id = chain_job.job_id
    if chain_job.spec_hash.lower() != spec_hash:
        raise InvalidInputError(f"the spec hashes to {spec_hash} but job {job_id} on chain has specHash "
                                f"{chain_job.spec_hash}: send the exact spec that was posted")
    if chain_job.reward_per_unit != spec.payment.reward_per_unit:
        raise InvalidInputError(f"spec reward_per_unit {spec.payment.reward_per_unit} differs from the chain's "
                                f"{chain_job.reward_per_unit}")
    if chain_job.max_units < spec.max_units:
        raise InvalidInputError(f"spec needs {spec.max_units} units (K*R) but the chain job allows {chain_job.max_units}")
