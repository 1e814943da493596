"""`crowdtrain coordinator ...`: run the coordinator service and manage its database.

Configuration is the CROWDTRAIN_COORD_* environment (docs/coordinator.md); the options
below override the most common variables for one invocation.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="The coordinator service (scheduler, result intake, blob store, chain indexer, settlement).",
                  no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")

_OVERRIDES = {
    "data_dir": "CROWDTRAIN_COORD_DATA_DIR",
    "database_url": "CROWDTRAIN_COORD_DATABASE_URL",
    "redis_url": "CROWDTRAIN_COORD_REDIS_URL",
    "rpc_url": "CROWDTRAIN_COORD_RPC_URL",
    "market_address": "CROWDTRAIN_COORD_MARKET_ADDRESS",
    "keystore": "CROWDTRAIN_COORD_KEYSTORE",
    "password_file": "CROWDTRAIN_COORD_KEYSTORE_PASSWORD_FILE",
}


def _apply(**values: Optional[str]) -> None:
    """Export the given options as CROWDTRAIN_COORD_* so every uvicorn worker sees them."""
    for name, value in values.items():
        if value is not None:
            os.environ[_OVERRIDES[name]] = str(value)


def _settings():  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from coordinator.core.config import Settings

    try:
        return Settings()
    except ValidationError as e:
        typer.echo(f"invalid coordinator configuration (CROWDTRAIN_COORD_*):\n{e}", err=True)
        raise typer.Exit(2) from None


DataDir = typer.Option(None, help="data directory (default var/coordinator)")
DbUrl = typer.Option(None, help="SQLAlchemy URL; default SQLite under the data directory")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8600, help="TCP port"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes (need an external Redis when > 1)"),
    data_dir: Optional[Path] = DataDir,
    database_url: Optional[str] = DbUrl,
    redis_url: Optional[str] = typer.Option(None, help="redis://...; default an embedded Redis"),
    rpc_url: Optional[str] = typer.Option(None, help="chain JSON-RPC URL"),
    market_address: Optional[str] = typer.Option(None, help="Market contract address"),
    keystore: Optional[Path] = typer.Option(None, help="the coordinator's keystore (settlement signs with it); "
                                            "or export CROWDTRAIN_COORD_PRIVATE_KEY"),
    password_file: Optional[Path] = typer.Option(None, help="keystore password file (first line)"),
    migrate: bool = typer.Option(False, "--migrate", help="apply pending migrations before starting"),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs); the chain indexer and settlement run inside."""
    import uvicorn

    from coordinator.core.db import DatabaseNotMigratedError, ensure_migrated, make_engine

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url, redis_url=redis_url,
           rpc_url=rpc_url, market_address=market_address, keystore=str(keystore) if keystore else None,
           password_file=str(password_file) if password_file else None)
    settings = _settings()
    if workers > 1 and not settings.redis_url:
        typer.echo("--workers > 1 needs a shared Redis: set --redis-url (the embedded one serves one process)", err=True)
        raise typer.Exit(2)
    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_migrated(engine, auto_migrate=migrate or settings.auto_migrate)
    except DatabaseNotMigratedError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    uvicorn.run("coordinator.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), data_dir: Optional[Path] = DataDir,
               database_url: Optional[str] = DbUrl) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from coordinator.core.db import current_revision, make_engine, upgrade

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url)
    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    typer.echo(f"{where}: {before or '(empty)'} -> {after}")


@db_app.command("current")
def db_current(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DbUrl) -> None:
    """Print the database's revision and the code's head revision."""
    from coordinator.core.db import current_revision, head_revision, make_engine

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url)
    engine = make_engine(_settings().resolved_database_url)
    try:
        typer.echo(f"database: {current_revision(engine) or '(empty)'}  code head: {head_revision()}")
    finally:
        engine.dispose()


@app.command()
def openapi(out: Optional[Path] = typer.Option(None, help="write here instead of stdout")) -> None:
    """Print the OpenAPI document (no database, Redis or chain needed)."""
    from coordinator.core.config import Settings
    from coordinator.main import create_app

    text = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True)
    if out:
        out.write_text(text + "\n")
    else:
        typer.echo(text)


Keystore = typer.Option(None, help="the coordinator's keystore file; or export CROWDTRAIN_COORD_PRIVATE_KEY")
PasswordFile = typer.Option(None, help="keystore password file (first line); or $CROWDTRAIN_KEYSTORE_PASSWORD")


def _context(settings):  # type: ignore[no-untyped-def]
    """build_context for a one-off command. Without a shared Redis it gets its own embedded
    one in a temporary directory (never the server's socket under data_dir): then its leader
    lock is private, and only the database's compare-and-set keeps processes apart."""
    import tempfile

    from coordinator import CoordinatorError
    from coordinator.main import build_context
    from protocol import ProtocolError

    if settings.redis_url is None:
        settings = settings.model_copy(update={
            "database_url": settings.resolved_database_url, "blob_dir": settings.resolved_blob_dir,
            "datasets_dir": settings.resolved_datasets_dir, "data_dir": Path(tempfile.mkdtemp(prefix="ct-cli-"))})
    try:
        return build_context(settings)
    except (CoordinatorError, ProtocolError) as e:
        typer.echo(f"cannot start: {e}", err=True)
        raise typer.Exit(1) from None


def _close(ctx) -> None:  # type: ignore[no-untyped-def]
    for part in (ctx.intake, ctx.aggregator):
        close = getattr(part, "close", None)
        if close is not None:
            close()
    ctx.redis.close()
    ctx.engine.dispose()
    if ctx.settings.data_dir.name.startswith("ct-cli-"):  # the private embedded Redis's directory
        import shutil

        shutil.rmtree(ctx.settings.data_dir, ignore_errors=True)


def _run_until_signal(loops) -> None:  # type: ignore[no-untyped-def]
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loops.stop_event.set())
    loops.start()
    loops.stop_event.wait()
    loops.stop()


@app.command()
def settle(
    once: bool = typer.Option(False, "--once", help="one pass (index, then commit/finalize/complete), then exit"),
    ignore_leader: bool = typer.Option(False, "--ignore-leader", help="run even while another process leads the "
                                       "settlement loop (safe: each round is taken by a database compare-and-set)"),
    data_dir: Optional[Path] = DataDir,
    database_url: Optional[str] = DbUrl,
    redis_url: Optional[str] = typer.Option(None, help="redis://... shared with the servers (leader lock)"),
    rpc_url: Optional[str] = typer.Option(None, help="chain JSON-RPC URL"),
    market_address: Optional[str] = typer.Option(None, help="Market contract address"),
    keystore: Optional[Path] = Keystore,
    password_file: Optional[Path] = PasswordFile,
) -> None:
    """Settle closed rounds on chain: commit their roots, finalize them after the challenge
    window, complete finished jobs. Exit code 1 when a pass recorded errors (--once)."""
    from coordinator.chain_loops import ChainLoops, make_indexer, make_settler
    from coordinator.leader import LeaderLock

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url, redis_url=redis_url,
           rpc_url=rpc_url, market_address=market_address, keystore=str(keystore) if keystore else None,
           password_file=str(password_file) if password_file else None)
    ctx = _context(_settings())
    try:
        settler = make_settler(ctx)
        if settler is None:
            typer.echo(f"no coordinator key: pass --keystore FILE or export {ctx.settings.key_env}", err=True)
            raise typer.Exit(2)
        indexer = make_indexer(ctx)
        if not once:
            _run_until_signal(ChainLoops(ctx, indexer, settler))
            return
        s = ctx.settings
        lock = LeaderLock(ctx.redis.sync, s.redis_prefix, "settlement", ttl_s=max(60.0, 10 * s.chain_poll_interval_s))
        if not ignore_leader and not lock.hold():
            typer.echo("another process leads settlement (its leader lock is held): nothing done; "
                       "pass --ignore-leader to run anyway")
            return
        try:
            if indexer is not None:
                res = indexer.catch_up()
                typer.echo(f"indexed to block {res.cursor} (head {res.head})")
            rep = settler.run_once()
        finally:
            lock.release()
        for job, rnd, tx in rep.committed:
            typer.echo(f"committed job {job} round {rnd}: {tx}")
        for job, rnd, tx in rep.finalized:
            typer.echo(f"finalized job {job} round {rnd}: {tx or '(by someone else)'}")
        for job, tx in rep.completed:
            typer.echo(f"completed job {job}: {tx or '(already completed)'}")
        for line in rep.waiting:
            typer.echo(f"waiting: {line}")
        for line in rep.errors:
            typer.echo(f"error: {line}", err=True)
        if not (rep.committed or rep.finalized or rep.completed or rep.waiting or rep.errors):
            typer.echo("nothing to settle")
        if rep.errors:
            raise typer.Exit(1)
    finally:
        _close(ctx)


@app.command()
def index(
    once: bool = typer.Option(False, "--once", help="catch up to the confirmed head, then exit"),
    data_dir: Optional[Path] = DataDir,
    database_url: Optional[str] = DbUrl,
    redis_url: Optional[str] = typer.Option(None, help="redis://... shared with the servers (leader lock)"),
    rpc_url: Optional[str] = typer.Option(None, help="chain JSON-RPC URL"),
    market_address: Optional[str] = typer.Option(None, help="Market contract address"),
    batch_blocks: Optional[int] = typer.Option(None, min=1, help="blocks per eth_getLogs request"),
) -> None:
    """Follow the Market's and JuryArbiter's events into the database (chain_events)."""
    from coordinator.chain_loops import ChainLoops, make_indexer

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url, redis_url=redis_url,
           rpc_url=rpc_url, market_address=market_address)
    if batch_blocks is not None:
        os.environ["CROWDTRAIN_COORD_INDEXER_BATCH_BLOCKS"] = str(batch_blocks)
    ctx = _context(_settings())
    try:
        indexer = make_indexer(ctx)
        if indexer is None:
            typer.echo("no chain to index (check --rpc-url)", err=True)
            raise typer.Exit(2)
        if once:
            res = indexer.catch_up()
            typer.echo(f"indexed to block {res.cursor} (head {res.head})")
        else:
            _run_until_signal(ChainLoops(ctx, indexer, None))
    finally:
        _close(ctx)
