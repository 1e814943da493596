"""Alembic migrations on SQLite and PostgreSQL: they produce exactly the ORM's schema, go
down and up again, and the app refuses to start on an un-migrated database."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from coordinator.chain import TestOnlyStaticGateway
from coordinator.core.config import Settings
from coordinator.core.db import DatabaseNotMigratedError, current_revision, downgrade, head_revision, make_engine, upgrade
from coordinator.intake import StructuralIntake
from coordinator.main import create_app
from coordinator.models import Base
from tests.coordinator.conftest import PG_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"crowdtrain_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_match_models_and_round_trip(empty_db: str) -> None:
    engine = make_engine(Settings(database_url=empty_db).resolved_database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        downgrade(engine, "base")
        with engine.connect() as conn:
            assert set(engine.dialect.get_table_names(conn)) <= {"alembic_version"}
        upgrade(engine)
        upgrade(engine)  # idempotent
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_app_refuses_to_start_unmigrated_then_auto_migrates(empty_db: str, redis_url: str, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d", database_url=empty_db, redis_url=redis_url, redis_prefix="mig")
    app = create_app(s, gateway=TestOnlyStaticGateway(), intake=StructuralIntake())
    with pytest.raises(DatabaseNotMigratedError, match="crowdtrain coordinator db upgrade"):
        with TestClient(app):
            pass
    app = create_app(s.model_copy(update={"auto_migrate": True}), gateway=TestOnlyStaticGateway(),
                     intake=StructuralIntake())
    with TestClient(app) as c:
        assert c.get("/health").json()["db_revision"] == head_revision()
