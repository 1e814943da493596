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

app = typer.Typer(help="The coordinator service (scheduler, result intake, blob store).", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")

_OVERRIDES = {
    "data_dir": "CROWDTRAIN_COORD_DATA_DIR",
    "database_url": "CROWDTRAIN_COORD_DATABASE_URL",
    "redis_url": "CROWDTRAIN_COORD_REDIS_URL",
    "rpc_url": "CROWDTRAIN_COORD_RPC_URL",
    "market_address": "CROWDTRAIN_COORD_MARKET_ADDRESS",
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
    migrate: bool = typer.Option(False, "--migrate", help="apply pending migrations before starting"),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from coordinator.core.db import DatabaseNotMigratedError, ensure_migrated, make_engine

    _apply(data_dir=str(data_dir) if data_dir else None, database_url=database_url, redis_url=redis_url,
           rpc_url=rpc_url, market_address=market_address)
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
