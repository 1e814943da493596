"""Database engine, sessions and migrations (SQLite by default, PostgreSQL by URL).

Migrations are Alembic scripts in `coordinator/migrations/versions`, run programmatically
(no alembic.ini). The app refuses to start on a database that is not at the head revision
unless `auto_migrate` is set (docs/coordinator.md, "Database"): a service silently
rewriting a shared production schema on start is a surprise nobody wants, while
`crowdtrain coordinator db upgrade` is one explicit command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from coordinator import CoordinatorError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseNotMigratedError(CoordinatorError, RuntimeError):
    """The database schema is not at the code's head revision."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Engine for `url`. SQLite gets WAL, a 30 s busy timeout and foreign keys, so several
    threads of one process can share the file; PostgreSQL gets a pool sized for the API's
    thread pool (40 threads). No pre-ping (a round trip per transaction, 7% of a loaded
    server's time): a connection the server dropped fails one request, and SQLAlchemy then
    replaces the whole pool; connections are recycled after 30 minutes."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 30)
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "coordinator/migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """Revision stamped in the database, None for an empty (never migrated) database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_MIGRATION_LOCK = 0x63726F7764  # PostgreSQL advisory lock key ("crowd"): one migrator at a time


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent). On PostgreSQL an advisory lock makes
    processes that start together (auto_migrate) take turns: the second finds the schema
    current and does nothing. SQLite serialises writers by itself."""
    cfg = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def ensure_migrated(engine: Engine, *, auto_migrate: bool) -> str:
    """Return the head revision once the database is at it; upgrade first when allowed.

    Raises DatabaseNotMigratedError naming both revisions and the command to run.
    """
    head = head_revision()
    cur = current_revision(engine)
    if cur == head:
        return head
    if auto_migrate:
        upgrade(engine)
        return head
    where = engine.url.render_as_string(hide_password=True)
    raise DatabaseNotMigratedError(
        f"database {where} is at revision {cur or '(empty)'}, the code needs {head}: run "
        "`crowdtrain coordinator db upgrade` (or set CROWDTRAIN_COORD_AUTO_MIGRATE=true)"
    )
