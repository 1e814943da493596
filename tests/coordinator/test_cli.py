"""`crowdtrain coordinator db upgrade|current`, `serve` refusing an un-migrated database,
and `openapi` without any service running."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crowdtrain.cli import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CROWDTRAIN_COORD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_db_upgrade_and_current(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    r = runner.invoke(app, ["coordinator", "db", "current", "--database-url", url])
    assert r.exit_code == 0 and "database: (empty)" in r.output
    r = runner.invoke(app, ["coordinator", "db", "upgrade", "--database-url", url])
    assert r.exit_code == 0 and "(empty) -> 0004" in r.output
    r = runner.invoke(app, ["coordinator", "db", "current", "--database-url", url])
    assert "database: 0004  code head: 0004" in r.output


def test_serve_refuses_unmigrated_database(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(app, ["coordinator", "serve", "--database-url", f"sqlite:///{tmp_path / 'new.sqlite3'}"])
    assert r.exit_code == 1 and "crowdtrain coordinator db upgrade" in r.output


def test_openapi_lists_the_api(runner: CliRunner) -> None:
    r = runner.invoke(app, ["coordinator", "openapi"])
    assert r.exit_code == 0
    paths = json.loads(r.output)["paths"]
    for p in ("/jobs/{job_id}/claim", "/leases/{lease_id}/heartbeat", "/units/{unit_id}/result", "/blobs/{sha256}",
              "/events", "/jobs/{job_id}/model", "/jobs/{job_id}/report", "/chain/status", "/chain/events"):
        assert p in paths
