"""Jobs: register (signed), list, inspect, rounds and units; claim a unit (signed, staked)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from coordinator import admission, crud, scheduler
from coordinator.api.deps import ContextDep, CurrentAccount, CurrentWorker, SessionDep
from coordinator.api.views import job_view, round_view, unit_view
from coordinator.errors import NotFoundError
from protocol.wire import ErrorBody, JobRegistration, JobView, LeaseGrant, RoundView, UnitView

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=0, le=2**63 - 1, description="on-chain job id")]
AUTH_ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422, 429, 503)}


@router.post("", response_model=JobView, status_code=201, responses={200: {"model": JobView}, **AUTH_ERRORS})
def register_job(body: JobRegistration, response: Response, ctx: ContextDep, account: CurrentAccount) -> JobView:
    """Register an on-chain job with its spec (201 when this call created the job's row; 200 when
    the indexer or an earlier registration already had it). The answer is `held` with a
    `hold_reason` until the job's inputs are present (docs/coordinator.md, "Job intake")."""
    job, created = admission.register_job(ctx, job_id=body.job_id, spec_obj=body.spec)
    response.status_code = 201 if created else 200
    return job_view(job)


@router.get("", response_model=list[JobView])
def list_jobs(session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0, le=2**31)] = 0) -> list[JobView]:
    return [job_view(j) for j in crud.list_jobs(session, limit=limit, offset=offset)]


@router.get("/{job_id}", response_model=JobView, responses={404: {"model": ErrorBody}})
def get_job(job_id: JobId, session: SessionDep) -> JobView:
    job = crud.get_job(session, job_id=job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} is not registered with this coordinator")
    return job_view(job)


@router.get("/{job_id}/rounds", response_model=list[RoundView], responses={404: {"model": ErrorBody}})
def list_rounds(job_id: JobId, session: SessionDep) -> list[RoundView]:
    if crud.get_job(session, job_id=job_id) is None:
        raise NotFoundError(f"job {job_id} is not registered with this coordinator")
    rounds = crud.list_rounds(session, job_id=job_id)
    live = crud.accepted_by_round(session, round_ids=[r.id for r in rounds if r.status == "open"])
    return [round_view(r, live.get(r.id, 0)) for r in rounds]


@router.get("/{job_id}/rounds/{round}/units", response_model=list[UnitView], responses={404: {"model": ErrorBody}})
def list_units(job_id: JobId, round: Annotated[int, Path(ge=0, le=2**31 - 1)], session: SessionDep) -> list[UnitView]:
    rnd = crud.get_round(session, job_id=job_id, round=round)
    if rnd is None:
        raise NotFoundError(f"job {job_id} has no round {round}")
    return [unit_view(u) for u in crud.list_units(session, round_id=rnd.id)]


@router.post("/{job_id}/claim", response_model=LeaseGrant,
             responses={204: {"description": "no unit free now; retry after Retry-After seconds"}, **AUTH_ERRORS})
def claim(job_id: JobId, ctx: ContextDep, worker: CurrentWorker) -> Response | LeaseGrant:
    """Lease the job's next unit (or get back the lease the caller already holds in this job)."""
    grant = scheduler.claim(ctx, worker=worker, job_id=job_id)
    if grant is None:
        retry = max(1, int(min(ctx.settings.lease_ttl_s, 30) / 4))
        return Response(status_code=204, headers={"Retry-After": str(retry)})
    return grant
