"""What indexed chain events do to the coordinator's state, and how a reorg undoes it.

`apply` runs inside the indexer's transaction for each newly inserted `chain_events` row;
`unapply` runs, newest first, for each row a reorg removes. Effects:

| event | effect |
|---|---|
| `JobPosted` naming this coordinator (any, when none is configured) | a `held` job row (admission opens it) |
| `JobCompleted` / `JobClosed` | `jobs.chain_status`; a closed job that was still running becomes `closed` |
| `RoundCommitted` | reconciles the round: root, tx, total, challenge end, `settle_state = committed` (a commit whose sender crashed before recording it is found here) |
| `RoundFinalized` | `settle_state = finalized`, `finalize_tx` |
| `DisputeResolved` with ruling 2 | the disputed leaf's unit gets `revoked_by_dispute` |
| stakes, slashes, claims, top-ups, jury events | stored only (dashboards, reports) |

Undo: a removed `RoundCommitted`/`RoundFinalized` puts the round back one state with its
lease expired, so the settlement loop re-reads the chain (the transaction may be mined
again on the new branch, or must be sent again); a removed `JobPosted` deletes a job that
never started; chain status and revocations are recomputed from the remaining rows.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select

from coordinator import crud
from coordinator.admission import track_chain_job
from coordinator.context import Context, Tx
from coordinator.models import ChainEvent, Job, Result, Round, Unit
from protocol.hashing import from_hex, to_hex
from protocol.merkle import round_leaf

log = logging.getLogger(__name__)
MAX_DB_INT = 2**63 - 1
MAX_ROUND = 2**31 - 1
DISPUTE_EVENTS = {"DisputeResolved", "DisputeTimedOut", "ChallengeEvidence", "Slashed", "PayoutCredited"}
JURY_EVENTS = {"JurorsDrawn", "VoteCommitted", "VoteRevealed", "JuryResolved", "JurorRewarded"}


def json_safe(v: Any) -> Any:
    """Decoded ABI values -> JSON: bytes as 0x-hex, integers beyond 2^53 as decimal strings."""
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()  # any length: digests, signatures
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**53 else str(v)
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return str(v)


def as_int(v: Any) -> int:
    return int(v)


def event_job_id(s: Any, name: str, args: dict[str, Any], disputes: dict[tuple[str, int], int]) -> int | None:
    """The job an event belongs to: its jobId, or the job of the dispute it names."""
    if "jobId" in args:
        j = as_int(args["jobId"])
        return j if j <= MAX_DB_INT else None
    if name in DISPUTE_EVENTS and "disputeId" in args:
        return _dispute_job(s, disputes, "market", as_int(args["disputeId"]))
    if name in JURY_EVENTS and "disputeId" in args:
        return _dispute_job(s, disputes, "arbiter", as_int(args["disputeId"]))
    return None


def _dispute_job(s: Any, cache: dict[tuple[str, int], int], kind: str, dispute_id: int) -> int | None:
    if (kind, dispute_id) not in cache:
        for args, job_id in s.execute(select(ChainEvent.args, ChainEvent.job_id).where(ChainEvent.name == "DisputeOpened")):
            if job_id is not None:
                cache[("market", as_int(args["disputeId"]))] = job_id
                cache[("arbiter", as_int(args["arbiterDisputeId"]))] = job_id
    return cache.get((kind, dispute_id))


def _round(s: Any, ev: ChainEvent) -> Round | None:
    r = as_int(ev.args["round"])
    if ev.job_id is None or r > MAX_ROUND:
        return None
    return crud.get_round(s, job_id=ev.job_id, round=r)


def apply(ctx: Context, tx: Tx, ev: ChainEvent, *, now: float) -> int | None:
    """Effects of a new event; returns a job id to run admission for after the commit."""
    s, a, name = tx.session, ev.args, ev.name
    if name == "JobPosted" and ev.job_id is not None:
        ours = ctx.coordinator_address
        if ours is None or a["coordinator"] == ours:
            track_chain_job(s, job_id=ev.job_id, owner=a["owner"], coordinator=a["coordinator"],
                            spec_hash=a["specHash"], reward_per_unit=as_int(a["rewardPerUnit"]),
                            max_units=as_int(a["maxUnits"]), deadline=as_int(a["deadline"]), now=now,
                            register_tx=ev.tx_hash)
            return ev.job_id
    elif name in ("JobCompleted", "JobClosed") and ev.job_id is not None:
        job = crud.get_job(s, job_id=ev.job_id)
        if job is not None:
            _set_chain_status(ctx, tx, job, "closed" if name == "JobClosed" else "completed", now=now)
    elif name == "RoundCommitted":
        rnd = _round(s, ev)
        if rnd is not None:
            _reconcile_commit(tx, rnd, ev, now=now)
    elif name == "RoundFinalized":
        rnd = _round(s, ev)
        if rnd is not None:
            rnd.finalize_tx = rnd.finalize_tx or ev.tx_hash
            if rnd.settle_state != "finalized":
                rnd.settle_state, rnd.settle_owner, rnd.settle_lease_until, rnd.settle_error = "finalized", None, None, None
                tx.emit("round.finalized", rnd.job_id, {"round": rnd.round, "tx": ev.tx_hash}, now=now)
    elif name == "DisputeResolved" and as_int(a["ruling"]) == 2:
        _revoke(s, tx, as_int(a["disputeId"]), now=now)
    return None


def _reconcile_commit(tx: Tx, rnd: Round, ev: ChainEvent, *, now: float) -> None:
    a = ev.args
    root = str(a["root"]).lower()
    if rnd.committed_root is not None and rnd.committed_root.lower() != root:
        rnd.settle_error = (f"the chain holds root {root} for this round (tx {ev.tx_hash}) but this coordinator "
                            f"built {rnd.committed_root}: its records and the chain disagree")
        log.error("job %s round %s: %s", rnd.job_id, rnd.round, rnd.settle_error)
        return
    rnd.challenge_end = as_int(a["challengeEnd"])
    if rnd.settle_state in ("committed", "finalized"):
        rnd.commit_tx = rnd.commit_tx or ev.tx_hash
        return
    rnd.committed_root, rnd.commit_tx = root, ev.tx_hash
    rnd.committed_total, rnd.committed_units = str(as_int(a["total"])), as_int(a["numUnits"])
    rnd.settle_state, rnd.settle_owner, rnd.settle_lease_until, rnd.settle_error = "committed", None, None, None
    tx.emit("round.committed", rnd.job_id, {"round": rnd.round, "root": root, "tx": ev.tx_hash,
                                            "total": str(as_int(a["total"])), "units": as_int(a["numUnits"])}, now=now)


def _set_chain_status(ctx: Context, tx: Tx, job: Job, status: str, *, now: float) -> None:
    job.chain_status = status
    if status == "closed" and job.status in ("held", "active", "awaiting_aggregation"):
        job.status, job.hold_reason = "closed", None
        tx.emit("job.closed", job.id, {"reason": "closed on chain by its owner"}, now=now)
    ctx.forget_job(job.id)


def _revoke(s: Any, tx: Tx, dispute_id: int, *, now: float) -> None:
    opened = next((e for e in s.scalars(select(ChainEvent).where(ChainEvent.name == "DisputeOpened"))
                   if as_int(e.args["disputeId"]) == dispute_id), None)
    if opened is None or opened.job_id is None:
        return
    job = crud.get_job(s, job_id=opened.job_id)
    r = as_int(opened.args["round"])
    rnd = crud.get_round(s, job_id=opened.job_id, round=r) if job is not None and r <= MAX_ROUND else None
    if job is None or rnd is None:
        return
    leaf = str(opened.args["leaf"]).lower()
    for unit, res in s.execute(select(Unit, Result).join(Result, Unit.accepted_result_id == Result.id)
                               .where(Unit.round_id == rnd.id, Unit.status == "accepted")):
        mine = round_leaf(job_id=job.id, round=r, unit=unit.index, worker=res.worker, amount=int(job.reward_per_unit),
                          result_hash=from_hex(res.result_hash))
        if to_hex(mine) == leaf:
            unit.revoked_by_dispute = dispute_id
            tx.emit("unit.revoked", job.id, {"round": r, "unit": unit.index, "unit_id": unit.id, "worker": res.worker,
                                             "dispute_id": dispute_id}, now=now)
            return


def unapply(ctx: Context, tx: Tx, ev: ChainEvent, *, now: float) -> None:
    """Undo `apply` for an event a reorg removed (called newest first, before the row is deleted)."""
    s, name = tx.session, ev.name
    if name == "JobPosted" and ev.job_id is not None:
        job = crud.get_job(s, job_id=ev.job_id)
        if job is not None and job.register_tx == ev.tx_hash:
            if not crud.list_rounds(s, job_id=job.id):
                s.execute(delete(Job).where(Job.id == job.id))  # it never started: forget it entirely
            else:
                job.register_tx = None
                log.warning("job %s: its JobPosted was removed by a reorg after it started", job.id)
            ctx.forget_job(job.id)
    elif name in ("JobCompleted", "JobClosed") and ev.job_id is not None:
        job = crud.get_job(s, job_id=ev.job_id)
        if job is not None:
            left = {e.name for e in s.scalars(select(ChainEvent).where(
                ChainEvent.job_id == job.id, ChainEvent.name.in_(("JobCompleted", "JobClosed")), ChainEvent.id != ev.id))}
            job.chain_status = "closed" if "JobClosed" in left else "completed" if "JobCompleted" in left else "open"
            if job.status == "closed" and job.chain_status != "closed":
                job.status = _running_status(s, job)
            ctx.forget_job(job.id)
    elif name == "RoundCommitted":
        rnd = _round(s, ev)
        if rnd is not None and rnd.commit_tx == ev.tx_hash:
            # back to committing with an expired lease: settlement re-reads the chain and resends if needed
            rnd.settle_state, rnd.settle_owner, rnd.settle_lease_until = "committing", None, 0.0
            rnd.finalize_tx = None
    elif name == "RoundFinalized":
        rnd = _round(s, ev)
        if rnd is not None and rnd.finalize_tx == ev.tx_hash:
            rnd.settle_state, rnd.finalize_tx = "committed", None
    elif name == "DisputeResolved":
        for unit in s.scalars(select(Unit).where(Unit.revoked_by_dispute == as_int(ev.args["disputeId"]))):
            unit.revoked_by_dispute = None


def _running_status(s: Any, job: Job) -> str:
    rnd = crud.get_round(s, job_id=job.id, round=job.current_round)
    if rnd is None:
        return "held"
    if rnd.status == "open":
        return "active"
    return "complete" if job.rounds_total is not None and rnd.round + 1 >= job.rounds_total else "awaiting_aggregation"
