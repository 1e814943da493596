"""Live event stream: a Redis stream (`<prefix>:events`) every coordinator process appends
to after its database commit, read by the SSE endpoint `GET /events`.

The durable record is the `events` table (written in the same transaction as the change
it describes); the Redis stream is the live feed, capped at `maxlen` entries (approximate
trim), so a dashboard that reconnects with `Last-Event-ID` resumes without gaps unless it
was away for more than `maxlen` events, in which case it reloads from the API.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import redis
import redis.asyncio as aioredis

from protocol.wire import EventMessage


@dataclass(frozen=True)
class PendingEvent:
    kind: str
    job_id: int | None
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    def __init__(self, client: redis.Redis, prefix: str, *, maxlen: int = 100_000) -> None:
        self._r = client
        self.key = f"{prefix}:events"
        self.maxlen = maxlen

    def publish(self, events: list[PendingEvent]) -> list[str]:
        """Append committed events to the stream; returns their stream ids."""
        if not events:
            return []
        pipe = self._r.pipeline(transaction=False)
        for e in events:
            pipe.xadd(self.key, {"kind": e.kind, "job_id": "" if e.job_id is None else str(e.job_id),
                                 "data": json.dumps(e.data, separators=(",", ":"))},
                      maxlen=self.maxlen, approximate=True)
        return [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]

    async def follow(self, client: aioredis.Redis, *, last_id: str, job_id: int | None,
                     block_ms: int = 15_000) -> AsyncIterator[EventMessage | None]:
        """Yield events after `last_id` ("$" = only new ones, "0" = from the start of the
        stream) forever; yields None after each `block_ms` without events (SSE keep-alive)."""
        cursor = last_id
        while True:
            reply = await client.xread({self.key: cursor}, count=100, block=block_ms)
            if not reply:
                yield None
                continue
            for _key, entries in reply:
                for raw_id, fields in entries:
                    cursor = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                    f = {k.decode(): v.decode() for k, v in fields.items()}
                    jid = int(f["job_id"]) if f.get("job_id") else None
                    if job_id is not None and jid != job_id:
                        continue
                    yield EventMessage(id=cursor, kind=f["kind"], job_id=jid, data=json.loads(f["data"]))
