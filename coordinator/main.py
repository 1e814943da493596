"""The coordinator's FastAPI app: `create_app(settings)`.

Start-up (the lifespan) connects the database and refuses to start when it is not
migrated (unless `auto_migrate`), connects or starts Redis, binds the chain gateway, and
starts a sweeper task (expired leases, lost queues, round deadlines, pending outer steps,
held jobs) every `sweep_interval_s`, and the chain loops (indexer, settlement:
coordinator/chain_loops.py) every `chain_poll_interval_s`. `gateway`, `intake`,
`aggregator` and `signer` may be injected; by default they are the Market over `rpc_url`,
training's replay verifier (or a not-configured intake that answers 503 where torch is
missing), training's outer step (off with `aggregate=false`) and the key from `keystore`
or `$CROWDTRAIN_COORD_PRIVATE_KEY` (none: no settlement). OpenAPI docs are served at /docs and /openapi.json.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator

import anyio
from fastapi import FastAPI

from coordinator.aggregation import Aggregator, TrainingAggregator
from coordinator.api.errors import BodySizeLimit, install_error_handlers
from coordinator.api.routes import agents, blobs, events, health, jobs, leases, reports, units
from coordinator.blobs import BlobStore
from coordinator.chain import ChainGateway, MarketGateway
from coordinator.chain_loops import ChainLoops
from coordinator.context import Context
from coordinator.errors import ConfigurationError
from coordinator.core.config import Settings
from coordinator.core.db import ensure_migrated, make_engine, session_factory
from coordinator.core.redis import connect_redis
from coordinator.events import EventBus
from coordinator.guards import NonceStore, RateLimiter
from coordinator.compute import ComputePool
from coordinator.intake import Intake, default_intake, torch_available
from coordinator.leases import LeaseManager

if TYPE_CHECKING:
    from protocol.chain.keys import Signer

log = logging.getLogger(__name__)


def load_coordinator_signer(settings: Settings) -> "Signer | None":
    """The coordinator's key: `keystore` (password from `keystore_password_file` or
    $CROWDTRAIN_KEYSTORE_PASSWORD), else the `key_env` variable; None when neither is set.
    Raises KeyLoadError (a protocol.chain error) when one is set but unusable."""
    import os

    from protocol.chain.keys import from_env, from_keystore

    if settings.keystore is not None:
        return from_keystore(settings.keystore, password_file=settings.keystore_password_file, prompt=False)
    if os.environ.get(settings.key_env):
        return from_env(settings.key_env)
    return None


def coordinator_address(settings: Settings, signer: "Signer | None") -> str | None:
    """The address jobs must name: the key's; `coordinator_address` must agree when both are set."""
    if signer is None:
        return settings.coordinator_address
    if settings.coordinator_address is not None and settings.coordinator_address != signer.address:
        raise ConfigurationError(f"CROWDTRAIN_COORD_COORDINATOR_ADDRESS is {settings.coordinator_address} but the "
                                 f"coordinator's key ({signer.source}) is {signer.address}: drop the setting or "
                                 "use the matching key")
    return signer.address


def build_context(settings: Settings, *, gateway: ChainGateway | None = None, intake: Intake | None = None,
                  aggregator: Aggregator | None = None, signer: "Signer | None" = None) -> Context:
    """Connect everything; raises DatabaseNotMigratedError, RedisUnavailableError, UnavailableError,
    ConfigurationError and KeyLoadError. `signer` overrides the key from the settings."""
    signer = signer or load_coordinator_signer(settings)
    address = coordinator_address(settings, signer)
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
        aggregator=aggregator if settings.aggregate else None, coordinator_address=address, signer=signer,
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
               intake: Intake | None = None, aggregator: Aggregator | None = None,
               signer: "Signer | None" = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings, gateway=gateway, intake=intake, aggregator=aggregator, signer=signer)
        app.state.ctx = ctx
        task = asyncio.create_task(_sweeper(ctx))
        loops = ChainLoops.from_context(ctx)
        app.state.chain_loops = loops
        loops.start()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await anyio.to_thread.run_sync(loops.stop)
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
    app.include_router(reports.router)
    return app
