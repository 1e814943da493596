"""The coordinator against a real chain: anvil with the Market deployed by the project's
deploy code. The default gateway (no injection) reads stakes and jobs from the Market:
a job posted on chain registers, a staked worker claims, an unstaked one gets 403."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from coordinator.chain import MarketGateway
from coordinator.core.config import Settings
from coordinator.intake import StructuralIntake
from coordinator.main import create_app
from deploy.deploy import DeployConfig
from deploy.devnet import LocalMarket, start_local_market
from protocol.auth import make_auth_headers
from protocol.chain import Role
from tests.coordinator.helpers import TEST_MANIFEST, spec_of, wait_for

ONE = 10**18


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with start_local_market(config=DeployConfig.local(), save_dir=tmp_path_factory.mktemp("deployments")) as net:
        yield net


@pytest.fixture(scope="module")
def posted(market: LocalMarket) -> dict[str, object]:
    """Worker (dev account 3) staked the minimum; owner (1) posted a job naming coordinator (2)."""
    spec = spec_of(payment={"reward_per_unit": str(ONE)})
    owner, coord, worker = market.client(1), market.client(2), market.client(3)
    minimum = worker.market.min_stake(Role.WORKER)
    worker.market.stake(Role.WORKER, minimum)
    job_id, _ = owner.market.post_job(spec_hash=spec.spec_hash(), budget=spec.budget,
                                      reward_per_unit=spec.payment.reward_per_unit, max_units=spec.max_units,
                                      coordinator=coord.address, challenge_window=3600,
                                      deadline=owner.timestamp() + 86_400)
    return {"spec": spec, "job_id": job_id, "minimum": minimum, "owner": owner.address, "coordinator": coord.address}


def test_gateway_reads_stakes_and_jobs(market: LocalMarket, posted: dict) -> None:  # type: ignore[type-arg]
    gw = MarketGateway(market.rpc_url, market.deployment.address("Market"), cache_ttl_s=0)
    assert gw.chain_id == 31337
    assert gw.min_worker_stake() == posted["minimum"] == 100 * ONE
    assert gw.worker_stake(market.dev_accounts[3].address) == posted["minimum"]
    assert gw.worker_stake(market.dev_accounts[4].address) == 0
    job = gw.get_job(posted["job_id"])  # type: ignore[arg-type]
    spec = posted["spec"]
    assert job is not None and job.owner == posted["owner"] and job.coordinator == posted["coordinator"]
    assert job.spec_hash == "0x" + spec.spec_hash().hex() and job.max_units == spec.max_units  # type: ignore[attr-defined]
    assert job.reward_per_unit == ONE and job.status == 1
    assert gw.get_job(10_000) is None


def test_app_on_the_real_market(market: LocalMarket, posted: dict, redis_url: str, tmp_path: Path) -> None:  # type: ignore[type-arg]
    s = Settings(data_dir=tmp_path / "d", database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", redis_url=redis_url,
                 redis_prefix="gw", auto_migrate=True, rpc_url=market.rpc_url,
                 market_address=market.deployment.address("Market"), coordinator_address=str(posted["coordinator"]))
    app = create_app(s, intake=StructuralIntake())  # the default MarketGateway
    staked, unstaked = market.dev_accounts[3].account, market.dev_accounts[4].account
    job_id = posted["job_id"]
    with TestClient(app) as c:
        app.state.ctx.blobs.put_bytes(TEST_MANIFEST)  # the job's dataset is present
        body = json.dumps({"job_id": job_id, "spec": posted["spec"].model_dump(mode="json")}).encode()  # type: ignore[attr-defined]
        h = make_auth_headers(unstaked, method="POST", path="/jobs", body=body, chain_id=31337)
        r = c.post("/jobs", content=body, headers={**h, "content-type": "application/json"})
        # registering needs no stake: the chain vouches for the job (201; 200 when the indexer had it first)
        assert r.status_code in (200, 201), r.text
        assert r.json()["owner"] == posted["owner"] and r.json()["status"] == "active"
        job = wait_for(lambda: (lambda j: j if j["register_tx"] else None)(c.get(f"/jobs/{job_id}").json()))
        assert job["coordinator"] == posted["coordinator"] and job["chain_status"] == "open"
        h = make_auth_headers(staked, method="POST", path=f"/jobs/{job_id}/claim", chain_id=31337)
        assert c.post(f"/jobs/{job_id}/claim", headers=h).status_code == 200
        h = make_auth_headers(unstaked, method="POST", path=f"/jobs/{job_id}/claim", chain_id=31337)
        r = c.post(f"/jobs/{job_id}/claim", headers=h)
        assert r.status_code == 403 and "active worker stake of 0" in r.json()["detail"]
        assert c.get("/health").json()["chain_id"] == 31337
