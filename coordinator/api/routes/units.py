"""Units and results: inspect, and submit a signed result for a leased unit."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from coordinator import crud, results
from coordinator.api.deps import ContextDep, CurrentWorker, SessionDep
from coordinator.api.views import result_view, unit_view
from coordinator.errors import NotFoundError
from protocol.wire import ErrorBody, ResultReceipt, ResultSubmission, ResultView, UnitView

router = APIRouter(tags=["units"])
UnitId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 410, 422, 429, 503)}


@router.get("/units/{unit_id}", response_model=UnitView, responses={404: {"model": ErrorBody}})
def get_unit(unit_id: UnitId, session: SessionDep) -> UnitView:
    unit = crud.get_unit(session, unit_id=unit_id)
    if unit is None:
        raise NotFoundError(f"unit {unit_id} does not exist")
    return unit_view(unit)


@router.get("/units/{unit_id}/results", response_model=list[ResultView], responses={404: {"model": ErrorBody}})
def list_results(unit_id: UnitId, session: SessionDep) -> list[ResultView]:
    if crud.get_unit(session, unit_id=unit_id) is None:
        raise NotFoundError(f"unit {unit_id} does not exist")
    return [result_view(r) for r in crud.list_results(session, unit_id=unit_id)]


@router.post("/units/{unit_id}/result", response_model=ResultReceipt, responses=ERRORS)
def submit_result(unit_id: UnitId, body: ResultSubmission, ctx: ContextDep, worker: CurrentWorker) -> ResultReceipt:
    """Submit the signed result of the unit whose live lease the caller holds. Every blob must
    already be uploaded. The answer carries the verdict; a rejected unit returns to the queue."""
    return results.submit_result(ctx, worker=worker, unit_id=unit_id, body=body)


@router.get("/results/{result_id}", response_model=ResultView, responses={404: {"model": ErrorBody}})
def get_result(result_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep) -> ResultView:
    res = crud.get_result(session, result_id=result_id)
    if res is None:
        raise NotFoundError(f"result {result_id} does not exist")
    return result_view(res)
