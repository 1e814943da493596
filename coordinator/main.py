"""The coordinator's FastAPI app: `create_app(settings)`.

Start-up (the lifespan) connects the database and refuses to start when it is not
migrated (unless `auto_migrate`), connects or starts Redis, binds the chain gateway, and
starts a sweeper task (expired leases, lost queues, round deadlines, pending outer steps)
every `sweep_interval_s`. `gateway`, `intake` and `aggregator` may be injected; by default
they are the Market over `rpc_url`, training's replay verifier (or a not-configured intake
that answers 503 where torch is missing) and training's outer step (off with
`aggregate=false`). OpenAPI docs are served at /docs and /openapi.json.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
from fastapi import FastAPI

from coordinator.aggregation import Aggregator, TrainingAggregator
from coordinator.api.errors import BodySizeLimit, install_error_handlers
from coordinator.api.routes import agents, blobs, events, health, jobs, leases, units
from coordinator.blobs import BlobStore
from coordinator.chain import ChainGateway, MarketGateway
from coordinator.context import Context
from coordinator.core.config import Settings
from coordinator.core.db import ensure_migrated, make_engine, session_factory
from coordinator.core.redis import connect_redis
from coordinator.events import EventBus
from coordinator.guards import NonceStore, RateLimiter
from coordinator.compute import ComputePool
from coordinator.intake import Intake, default_intake, torch_available
from coordinator.leases import LeaseManager

log = logging.getLogger(__name__)


def build_context(settings: Settings, *, gateway: ChainGateway | None = None, intake: Intake | None = None,
                  aggregator: Aggregator | None = None) -> Context:
    """Connect everything; raises DatabaseNotMigratedError, RedisUnavailableError, UnavailableError."""
    engine = make_engine(settings.resolved_database_url)
    try:
        revision = ensure_migrated(engine, auto_migrate=settings.auto_migrate)
    except BaseException:
        engine.dispose()
        raise
    handles = connect_redis(settings)
    try:
        gw = gateway or MarketGateway(settings.rpc_url, settings.market_address, cache_ttl_s=settings.chain_cache_ttl_s,
                                      min_worker_stake=settings.min_worker_stake, expected_chain_id=settings.chain_id)
    except BaseException:
        handles.close()
        engine.dispose()
        raise
    p = settings.redis_prefix
    pool = ComputePool(settings.verify_processes)  # shared by the default intake and aggregator
    if aggregator is None and settings.aggregate and torch_available():
        aggregator = TrainingAggregator(pool, timeout_s=settings.verify_timeout_s)
    return Context(
        settings=settings, engine=engine, sessions=session_factory(engine), redis=handles,
        leases=LeaseManager(handles.sync, p), blobs=BlobStore(settings.resolved_blob_dir, max_bytes=settings.max_blob_bytes),
        bus=EventBus(handles.sync, p), nonces=NonceStore(handles.sync, p),
        limiter=RateLimiter(handles.sync, p, limit=settings.rate_limit_requests, window_s=settings.rate_limit_window_s),
        gateway=gw, intake=intake or default_intake(settings, pool), db_revision=revision,
        aggregator=aggregator if settings.aggregate else None,
    )


async def _sweeper(ctx: Context) -> None:
    from coordinator.scheduler import sweep

    while True:
        try:
            await anyio.to_thread.run_sync(sweep, ctx)
        except Exception:  # keep sweeping; a transient DB/Redis error must not stop it for good
            log.exception("sweep failed; retrying in %.1f s", ctx.settings.sweep_interval_s)
        await asyncio.sleep(ctx.settings.sweep_interval_s)


def create_app(settings: Settings | None = None, *, gateway: ChainGateway | None = None,
               intake: Intake | None = None, aggregator: Aggregator | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings, gateway=gateway, intake=intake, aggregator=aggregator)
        app.state.ctx = ctx
        task = asyncio.create_task(_sweeper(ctx))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for part in (ctx.intake, ctx.aggregator):
                close = getattr(part, "close", None)
                if close is not None:
                    close()
            await ctx.redis.aio.aclose()
            ctx.redis.close()
            ctx.engine.dispose()

    app = FastAPI(title="crowdtrain coordinator", version="1",
                  description="Scheduler, result intake and blob store of a crowdtrain market. Signed requests "
                              "carry EIP-712 `CoordinatorAuth` headers (docs/protocol.md).",
                  lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_json_bytes)
    for r in (health.router, blobs.router, jobs.router, leases.router, units.router, events.router):
        app.include_router(r)
    app.include_router(agents.router)  # agents' additions (routes/agents.py)
    return app
