"""Fixtures for the agent tests: one anvil + market per session (each test in an EVM
snapshot), a throwaway Redis, a small packed dataset, and a coordinator per test.

Dev accounts: 0 deployer, 1 model owner, 2 coordinator, 3-4 workers, 5-9 verifiers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from deploy.deploy import DeployConfig
from deploy.devnet import LocalMarket, start_local_market
from protocol.chain.keys import Signer
from tests.agents.harness import Coordinator, coordinator_thread, pack_test_dataset, redis_server


@pytest.fixture(scope="session")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="session")
def net(deployments: Path) -> Iterator[LocalMarket]:
    with start_local_market(config=DeployConfig.local(), save_dir=deployments) as n:
        yield n


@pytest.fixture
def chain(net: LocalMarket) -> Iterator[LocalMarket]:
    snap = net.chain.snapshot()
    try:
        yield net
    finally:
        net.chain.revert(snap)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(packed dataset directory, its hash)."""
    d = tmp_path_factory.mktemp("dataset")
    return d, pack_test_dataset(d)


@pytest.fixture
def coord(chain: LocalMarket, redis_url: str, tmp_path: Path) -> Iterator[Coordinator]:
    """The coordinator app on this test's chain, settling with dev account 2's key."""
    with coordinator_thread(rpc_url=chain.rpc_url, market=chain.deployment.address("Market"),
                            coordinator_address=chain.dev_accounts[2].address, redis_url=redis_url,
                            data_dir=tmp_path / "coord", lease_ttl_s=5.0, signer=signer(chain, 2)) as c:
        yield c


def signer(net: LocalMarket, index: int) -> Signer:
    return Signer(net.dev_accounts[index].account, source=f"anvil dev account {index}")


@pytest.fixture
def signers(chain: LocalMarket) -> list[Signer]:
    return [signer(chain, i) for i in range(10)]
