"""Result intake: `POST /units/{id}/result` (docs/coordinator.md, "Submitting a result").

Order matters, so that a bad submission changes nothing:
1. read-only checks: the unit is open, the caller holds its live lease, every referenced
   blob is stored, the WorkResult signature recovers to the caller;
2. the lease moves to `submitting` (Redis, atomic): no other worker can get the unit and
   the lease cannot expire under the verifier, but the unit returns to the queue after
   `verify_timeout_s` if this process dies;
3. the intake judges the result (structure, then training's replay);
4. one database transaction records the result and the unit's new state, Redis finishes
   the lease (accepted: unit done; rejected: unit re-queued), then the transaction
   commits; if the commit fails an acceptance is undone in Redis.
If the intake cannot run (not configured, crashed) the lease goes back to `active`.
"""
from __future__ import annotations

import threading

from coordinator import crud
from coordinator.context import Context
from coordinator.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from coordinator.intake import UnitSubmission, Verdict
from coordinator.jobs import load_job_spec, maybe_close_round
from coordinator.models import Round
from coordinator.scheduler import _raise_for, record_reaped
from protocol.eip712 import Eip712Error, WorkResult, recover_work_result_signer, work_result_digest
from protocol.hashing import from_hex, to_hex
from protocol.wire import ResultReceipt, ResultSubmission


def submit_result(ctx: Context, *, worker: str, unit_id: int, body: ResultSubmission) -> ResultReceipt:
    lease_id = body.lease_id
    with ctx.transaction() as tx:
        s = tx.session
        unit = crud.get_unit(s, unit_id=unit_id)
        if unit is None:
            raise NotFoundError(f"unit {unit_id} does not exist")
        if unit.status in ("accepted", "cancelled"):
            raise ConflictError(f"unit {unit_id} is {unit.status}; it takes no more results")
        job = crud.get_job(s, job_id=unit.job_id)
        rnd = s.get(Round, unit.round_id)
        assert job is not None and rnd is not None
    ans = ctx.leases.check(lease_id=lease_id, worker=worker, unit_id=unit_id)
    _raise_for(ans, lease_id=lease_id, worker=worker)

    referenced = [body.output_hash, body.trace_blob, *body.snapshot_blobs]
    missing = sorted({h for h in referenced if not ctx.blobs.exists(h)})
    if missing:
        raise InvalidInputError(f"{len(missing)} referenced blob(s) are not stored: {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''}; upload each with PUT /blobs/<sha256> first")
    result = WorkResult(job_id=job.id, round=unit.round, unit=unit.index, input_hash=from_hex(body.input_hash),
                        output_hash=from_hex(body.output_hash), trace_root=from_hex(body.trace_root))
    gw = ctx.gateway
    try:
        signer = recover_work_result_signer(result, from_hex_sig(body.signature), chain_id=gw.chain_id,
                                            verifying_contract=gw.market_address)
    except Eip712Error as e:
        raise InvalidInputError(f"bad WorkResult signature: {e}") from None
    if signer != worker:
        raise ForbiddenError(f"the WorkResult signature recovers to {signer}, but the request was signed by {worker}: "
                             f"sign WorkResult(jobId={job.id}, round={unit.round}, unit={unit.index}, ...) in the "
                             f"Market domain (chain {gw.chain_id}, {gw.market_address}) with the worker's key")
    result_hash = to_hex(work_result_digest(result, chain_id=gw.chain_id, verifying_contract=gw.market_address))
    spec = load_job_spec(ctx, job)

    ans = ctx.leases.begin_submit(lease_id=lease_id, worker=worker, unit_id=unit_id,
                                  verify_timeout_s=ctx.settings.verify_timeout_s)
    if ans.status == "expired":
        record_reaped(ctx, [(lease_id, unit_id)])
    _raise_for(ans, lease_id=lease_id, worker=worker)
    try:
        with ctx.transaction(durable=False) as tx:  # a status mirror of Redis's `submitting`
            crud.set_unit_status(tx.session, unit_ids=[unit_id], status="verifying", only_if_open=True)
        verdict = ctx.intake.verify(UnitSubmission(
            spec=spec, job_id=job.id, round=unit.round, unit=unit.index, worker=worker,
            checkpoint=rnd.checkpoint_blob, slot_state=unit.slot_state_blob, input_hash=body.input_hash,
            output_hash=body.output_hash, trace_root=body.trace_root, trace_blob=body.trace_blob,
            snapshot_blobs=tuple(body.snapshot_blobs), blob_path=ctx.blobs.path))
    except BaseException:
        ctx.leases.abort_submit(lease_id=lease_id, ttl_s=ctx.settings.lease_ttl_s)
        with ctx.transaction(durable=False) as tx:
            crud.set_unit_status(tx.session, unit_ids=[unit_id], status="leased", only_if_open=True)
        raise
    return _record(ctx, worker=worker, unit_id=unit_id, body=body, verdict=verdict, result_hash=result_hash,
                   job_id=job.id, round=unit.round, unit_index=unit.index, round_id=rnd.id)


def from_hex_sig(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _record(ctx: Context, *, worker: str, unit_id: int, body: ResultSubmission, verdict: Verdict, result_hash: str,
            job_id: int, round: int, unit_index: int, round_id: int) -> ResultReceipt:
    now = ctx.now()
    evidence = ctx.blobs.put_bytes(verdict.evidence)[0] if verdict.evidence else None
    lease_id = body.lease_id
    accepted = verdict.accepted
    finished = False
    try:
        with ctx.transaction() as tx:
            s = tx.session
            if evidence:
                crud.record_blob(s, sha256=evidence, size=len(verdict.evidence or b""), uploader=None, now=now)
            res = crud.create_result(
                s, unit_id=unit_id, lease_id=lease_id, worker=worker, input_hash=body.input_hash,
                output_hash=body.output_hash, trace_root=body.trace_root, trace_blob=body.trace_blob,
                snapshot_blobs=list(body.snapshot_blobs), result_hash=result_hash, signature=body.signature.lower(),
                verdict="accepted" if accepted else "rejected", reason=verdict.reason, evidence_blob=evidence,
                submitted_at=now)
            changed = crud.set_unit_status(
                s, unit_ids=[unit_id], status="accepted" if accepted else "queued", only_if_open=True,
                current_lease=lease_id if accepted else None, **({"accepted_result_id": res.id} if accepted else {}))
            if changed != 1:  # the round closed at quorum and cancelled the unit meanwhile
                raise ConflictError(f"unit {unit_id} was cancelled (its round closed at quorum) while the result "
                                    "was verified; it takes no more results")
            crud.end_leases(s, lease_ids=[lease_id], reason="accepted" if accepted else "rejected", now=now)
            tx.emit("result.accepted" if accepted else "result.rejected", job_id,
                    {"result_id": res.id, "unit_id": unit_id, "round": round, "unit": unit_index, "worker": worker,
                     "reason": verdict.reason, "result_hash": result_hash}, now=now)
            s.flush()
            fin = ctx.leases.finish_submit(lease_id=lease_id, accepted=accepted)
            if fin.status != "ok":
                raise ConflictError(f"verification took longer than {ctx.settings.verify_timeout_s:g} s, so lease "
                                    f"{lease_id} expired and unit {unit_id} was re-queued; the result was not recorded")
            finished = True
            result_id = res.id
    except BaseException:
        if finished and accepted:  # Redis marked the unit done but the database did not commit
            ctx.leases.undo_accept(job_id=job_id, unit_ids=[unit_id])
        elif not finished:
            ctx.leases.abort_submit(lease_id=lease_id, ttl_s=ctx.settings.lease_ttl_s)
        raise
    status = maybe_close_round(ctx, job_id=job_id, round=round)
    if status != "open" and ctx.aggregator is not None:  # this submission closed the round
        from coordinator.aggregation import aggregate_safely

        threading.Thread(target=aggregate_safely, kwargs={"ctx": ctx, "job_id": job_id, "round": round},
                         name=f"outer-step-{job_id}-{round}", daemon=True).start()
    return ResultReceipt(result_id=result_id, unit_id=unit_id, verdict="accepted" if accepted else "rejected",
                         reason=verdict.reason, round_status=status)  # type: ignore[arg-type]
