"""What a job produced and what the chain says: the final model, the training report, and
the chain index (cursor, stored events) for dashboards."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from coordinator import crud
from coordinator.api.deps import ContextDep, SessionDep
from coordinator.errors import ConflictError, NotFoundError
from coordinator.models import ChainCursor, ChainEvent
from coordinator.report import build_report
from protocol.wire import ChainEventView, ChainStatusView, ErrorBody, JobReport

router = APIRouter(tags=["reports"])
JobId = Annotated[int, Path(ge=0, le=2**63 - 1, description="on-chain job id")]


@router.get("/jobs/{job_id}/model", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "G_R as a `crowdtrain/global` safetensors file"},
                       404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def get_model(job_id: JobId, request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    """The final model: the outer step after the job's last round (`ETag` = its SHA-256)."""
    job = crud.get_job(session, job_id=job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} is not registered with this coordinator")
    if job.final_model_blob is None:
        if job.status == "complete":
            why = ("its last round closed and the outer step is pending (it runs in the background; retry shortly)"
                   if ctx.aggregator is not None else "this coordinator runs without aggregation (aggregate=false)")
        else:
            why = f"it is {job.status} at round {job.current_round} of {job.rounds_total}"
        raise ConflictError(f"job {job_id} has no final model yet: {why}")
    path = ctx.blobs.path(job.final_model_blob)
    if not path.is_file():
        raise NotFoundError(f"the final model blob {job.final_model_blob} is missing from the blob store")
    etag = f'"{job.final_model_blob}"'
    if request.headers.get("if-none-match") in (etag, job.final_model_blob):
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(path, media_type="application/octet-stream", filename=f"job-{job_id}-model.safetensors",
                        headers={"ETag": etag})


@router.get("/jobs/{job_id}/report", response_model=JobReport, responses={404: {"model": ErrorBody}})
def get_report(job_id: JobId, ctx: ContextDep, session: SessionDep) -> JobReport:
    """Loss per round (training, from the units' traces; validation, when scored), units,
    workers and their earnings, roots and transactions."""
    job = crud.get_job(session, job_id=job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} is not registered with this coordinator")
    return build_report(ctx, session, job)


@router.get("/chain/status", response_model=ChainStatusView)
def chain_status(ctx: ContextDep, session: SessionDep) -> ChainStatusView:
    cur = session.get(ChainCursor, "market")
    return ChainStatusView(indexer_enabled=ctx.settings.indexer_enabled, settlement_enabled=ctx.signer is not None
                           and ctx.settings.settlement_enabled, coordinator_address=ctx.coordinator_address,
                           cursor_block=cur.block_number if cur else None, cursor_hash=cur.block_hash if cur else None,
                           events=int(session.scalar(select(func.count()).select_from(ChainEvent)) or 0))


@router.get("/chain/events", response_model=list[ChainEventView])
def chain_events(session: SessionDep, job_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
                 name: Annotated[str | None, Query(max_length=64)] = None,
                 after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ChainEventView]:
    """Indexed Market and JuryArbiter events, oldest first (page with `after_id`)."""
    q = select(ChainEvent).where(ChainEvent.id > after_id)
    if job_id is not None:
        q = q.where(ChainEvent.job_id == job_id)
    if name is not None:
        q = q.where(ChainEvent.name == name)
    return [ChainEventView(id=e.id, block_number=e.block_number, block_hash=e.block_hash, log_index=e.log_index,
                           tx_hash=e.tx_hash, contract=e.contract, name=e.name, job_id=e.job_id, args=e.args)
            for e in session.scalars(q.order_by(ChainEvent.id).limit(limit))]
