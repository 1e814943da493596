"""Events: the live stream as server-sent events, and the durable history as JSON."""
from __future__ import annotations

import json
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from coordinator import crud
from coordinator.api.deps import ContextDep, SessionDep

router = APIRouter(prefix="/events", tags=["events"])
StreamId = Annotated[str | None, Query(pattern=r"^(\$|0|[0-9]{1,20}-[0-9]{1,20})$",
                                       description="resume after this stream id ('0' = everything kept, '$' = new only)")]


@router.get("", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: <stream id>` / `event: <kind>` / `data: <EventMessage JSON>`"}})
async def stream(request: Request, ctx: ContextDep, job_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
                 after: StreamId = None, limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
                 last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")] = None,
                 keepalive_s: Annotated[float, Query(ge=0.05, le=60)] = 15.0) -> StreamingResponse:
    """Live events (Redis stream) as `text/event-stream`; resumes after `Last-Event-ID` or
    `after`. A `: keep-alive` comment is sent every `keepalive_s` without events; the stream
    ends after `limit` events when given."""
    start = last_event_id or after or "$"

    async def gen() -> AsyncIterator[bytes]:
        sent = 0
        async for ev in ctx.bus.follow(ctx.redis.aio, last_id=start, job_id=job_id, block_ms=int(keepalive_s * 1000)):
            if await request.is_disconnected():
                return
            if ev is None:
                yield b": keep-alive\n\n"
                continue
            yield f"id: {ev.id}\nevent: {ev.kind}\ndata: {ev.model_dump_json()}\n\n".encode()
            sent += 1
            if limit is not None and sent >= limit:
                return

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/history")
def history(session: SessionDep, job_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
            after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Durable events from the database, oldest first, after event row `after_id`."""
    return [{"id": e.id, "kind": e.kind, "job_id": e.job_id, "data": json.loads(json.dumps(e.data)),
             "created_at": e.created_at} for e in crud.list_events(session, job_id=job_id, after_id=after_id, limit=limit)]
