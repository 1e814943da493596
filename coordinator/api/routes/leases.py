"""Leases: heartbeat (extend) and release (give the unit back). Both signed by the holder."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from coordinator import scheduler
from coordinator.api.deps import ContextDep, CurrentWorker
from protocol.wire import ErrorBody, LeaseStatus

router = APIRouter(prefix="/leases", tags=["leases"])
LeaseIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="lease id from the claim")]
ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 410, 429)}


@router.post("/{lease_id}/heartbeat", response_model=LeaseStatus, responses=ERRORS)
def heartbeat(lease_id: LeaseIdPath, ctx: ContextDep, worker: CurrentWorker) -> LeaseStatus:
    """Extend the lease to now + lease TTL. 410 when it already expired (the unit was re-queued)."""
    return scheduler.heartbeat(ctx, worker=worker, lease_id=lease_id)


@router.post("/{lease_id}/release", status_code=204, responses=ERRORS)
def release(lease_id: LeaseIdPath, ctx: ContextDep, worker: CurrentWorker) -> Response:
    """Return the unit to the queue now instead of letting the lease expire."""
    scheduler.release(ctx, worker=worker, lease_id=lease_id)
    return Response(status_code=204)
