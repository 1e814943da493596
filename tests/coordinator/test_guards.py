"""Rate limits (429 + Retry-After), the embedded Redis default, and the live event bus."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from coordinator.chain import TestOnlyStaticGateway
from coordinator.core.config import Settings
from coordinator.events import EventBus, PendingEvent
from coordinator.guards import NonceStore, RateLimiter
from coordinator.intake import StructuralIntake
from coordinator.main import create_app
from tests.coordinator.helpers import Env, make_accounts


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'c.sqlite3'}"


def test_rate_limit_answers_429_with_retry_after(env: Env) -> None:
    env.register(7)
    ctx = env.ctx
    ctx.limiter.limit = 3
    k = env.accounts[1]
    codes = [env.claim(k).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = env.claim(k)
    assert r.status_code == 429 and "rate limit" in r.json()["detail"]
    assert 1 <= int(r.headers["retry-after"]) <= env.settings.rate_limit_window_s + 1
    assert env.claim(env.accounts[2]).status_code == 200  # limits are per account


def test_rate_limiter_window_resets(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    lim = RateLimiter(r, f"t{uuid.uuid4().hex[:8]}", limit=2, window_s=1)
    t = float(int(time.time()) + 5)  # a window that starts in the future: no clock race
    assert lim.hit(account="0xA", now=t) is None and lim.hit(account="0xA", now=t + 0.1) is None
    retry = lim.hit(account="0xA", now=t + 0.2)
    assert retry is not None and 0 < retry <= 6.5
    assert lim.hit(account="0xA", now=t + 1.0) is None  # next window


def test_nonce_used_once(redis_url: str) -> None:
    store = NonceStore(redis.Redis.from_url(redis_url), f"t{uuid.uuid4().hex[:8]}")
    now = time.time()
    assert store.consume(account="0xA", nonce=b"\1" * 32, expiry=int(now) + 30, now=now)
    assert not store.consume(account="0xA", nonce=b"\1" * 32, expiry=int(now) + 30, now=now)
    assert store.consume(account="0xB", nonce=b"\1" * 32, expiry=int(now) + 30, now=now)


def test_event_bus_follow_filters_and_resumes(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bus = EventBus(redis.Redis.from_url(redis_url), prefix)
    ids = bus.publish([PendingEvent("a", 1, {"x": 1}), PendingEvent("b", 2, {"x": 2}), PendingEvent("c", 1, {"x": 3})])

    async def read(last: str, job: int | None, n: int) -> list[tuple[str, str]]:
        client = aioredis.Redis.from_url(redis_url)
        out = []
        async for ev in bus.follow(client, last_id=last, job_id=job, block_ms=100):
            if ev is None:
                break
            out.append((ev.id, ev.kind))
            if len(out) == n:
                break
        await client.aclose()
        return out

    assert [k for _, k in asyncio.run(read("0", 1, 2))] == ["a", "c"]
    assert asyncio.run(read(ids[0], None, 2)) == [(ids[1], "b"), (ids[2], "c")]


def test_embedded_redis_is_the_default(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d", database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", auto_migrate=True)
    assert s.redis_url is None
    gw = TestOnlyStaticGateway()
    app = create_app(s, gateway=gw, intake=StructuralIntake())
    with TestClient(app) as c:
        ctx = app.state.ctx
        assert ctx.redis.embedded is not None and ctx.redis.embedded.process.poll() is None
        assert ctx.redis.sync.info()["redis_version"].startswith("6.")
        k = make_accounts(1)[0]
        gw.stakes[k.address] = 1000
        from protocol.auth import make_auth_headers

        h = make_auth_headers(k, method="POST", path="/jobs/1/claim", chain_id=gw.chain_id)
        assert c.post("/jobs/1/claim", headers=h).status_code == 404  # auth (nonces, rate limit) ran on it
        proc = ctx.redis.embedded.process
    assert proc.poll() is not None, "the embedded redis-server outlived the app"
