"""ORM rows -> wire models (protocol/wire.py). Kept apart so models never import pydantic."""
from __future__ import annotations

from coordinator.models import Job, Result, Round, Unit
from protocol.wire import JobView, ResultView, RoundView, UnitView


def job_view(j: Job) -> JobView:
    return JobView(job_id=j.id, spec_hash=j.spec_hash, spec_blob=j.spec_blob, owner=j.owner,
                   status=j.status,  # type: ignore[arg-type]
                   hold_reason=j.hold_reason, rounds=j.rounds_total, units_per_round=j.units_per_round,
                   current_round=j.current_round, registered_at=j.registered_at, coordinator=j.coordinator,
                   chain_status=j.chain_status,  # type: ignore[arg-type]
                   register_tx=j.register_tx, complete_tx=j.complete_tx, final_model=j.final_model_blob)


def round_view(r: Round, accepted_now: int | None = None) -> RoundView:
    """`accepted_now`: the live count for an open round (the column is set when it closes)."""
    accepted = accepted_now if r.status == "open" and accepted_now is not None else r.accepted
    return RoundView(round=r.round, status=r.status, checkpoint=r.checkpoint_blob, units=r.units,  # type: ignore[arg-type]
                     accepted=accepted, opened_at=r.opened_at, deadline=r.deadline, closed_at=r.closed_at,
                     committed_root=r.committed_root, commit_tx=r.commit_tx,
                     settle_state=r.settle_state,  # type: ignore[arg-type]
                     settle_error=r.settle_error, finalize_tx=r.finalize_tx, challenge_end=r.challenge_end,
                     val_loss=r.val_loss)


def unit_view(u: Unit) -> UnitView:
    return UnitView(unit_id=u.id, job_id=u.job_id, round=u.round, unit=u.index, status=u.status,  # type: ignore[arg-type]
                    attempts=u.attempts, lease_id=u.current_lease, revoked_by_dispute=u.revoked_by_dispute)


def result_view(r: Result) -> ResultView:
    return ResultView(result_id=r.id, unit_id=r.unit_id, worker=r.worker, lease_id=r.lease_id, input_hash=r.input_hash,
                      output_hash=r.output_hash, trace_root=r.trace_root, trace_blob=r.trace_blob,
                      snapshot_blobs=list(r.snapshot_blobs), result_hash=r.result_hash, signature=r.signature,
                      verdict=r.verdict, reason=r.reason, evidence_blob=r.evidence_blob,  # type: ignore[arg-type]
                      submitted_at=r.submitted_at)
