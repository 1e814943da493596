"""The chain indexer on a real anvil: every Market/JuryArbiter log stored exactly once across
restarts, a lost cursor, racing indexers and a killed indexer process; a reorg removes
the events of the abandoned blocks and indexes the new branch once; an RPC endpoint that
goes down and comes back is ridden out by the loop, which then catches up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import delete, func, select

from coordinator.chain_loops import make_indexer
from coordinator.indexer import ChainIndexer, RpcLogSource
from coordinator.models import ChainCursor, ChainEvent, Job
from deploy.devnet import LocalMarket
from protocol.chain import ChainClient, Role
from tests.coordinator.chain_env import COORD, TcpProxy, chain_env, chain_settings, post_job
from tests.coordinator.conftest import truncate_all
from tests.coordinator.helpers import spec_of, wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def truncated(url: str) -> Iterator[None]:
    try:
        yield
    finally:
        truncate_all(url)


def chain_logs(net: LocalMarket, addresses: list[str], start: int) -> list[tuple[str, int, str]]:
    """(tx hash, log index, name) of every decodable log of `addresses` from `start` to the head."""
    c = ChainClient(net.rpc_url)
    return sorted((e.tx_hash, e.log_index, e.name) for e in c.get_events(addresses, from_block=start))


def stored(ctx: Any) -> list[tuple[str, int, str]]:
    with ctx.sessions() as s:
        return sorted((t, i, n) for t, i, n in s.execute(select(ChainEvent.tx_hash, ChainEvent.log_index,
                                                                ChainEvent.name)))


def test_each_event_is_stored_once_across_restarts_lost_cursors_and_races(
        chain_market: LocalMarket, db_url: str, redis_url: str, tmp_path: Path) -> None:
    net = chain_market
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp_path / "d")
    start = settings.indexer_start_block
    assert start is not None
    post_job(net, spec_of(seed=101))
    net.client(3).market.stake(Role.WORKER, 1)
    post_job(net, spec_of(seed=102), coordinator=5)  # another coordinator's job: stored, not tracked
    with chain_env(net, settings) as ce:
        ce.indexer.catch_up()
        want = chain_logs(net, ce.indexer.addresses, start)
        assert {n for _, _, n in want} >= {"JobPosted", "Staked"}
        assert stored(ce.ctx) == want
        with ce.ctx.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Job)) == 1  # only the job naming this coordinator
        # a restarted process builds a new indexer from the stored cursor: nothing new, nothing twice
        again = make_indexer(ce.ctx)
        assert again is not None and again.poll().indexed == 0
        # a lost cursor (a restored backup): the whole range is read again and nothing is stored twice
        with ce.ctx.transaction() as tx:
            tx.session.execute(delete(ChainCursor))
        assert make_indexer(ce.ctx).catch_up().indexed == 0  # type: ignore[union-attr]
        assert stored(ce.ctx) == want
        # two indexers racing over the same range from scratch: one stores, the other backs off
        with ce.ctx.transaction() as tx:
            tx.session.execute(delete(ChainCursor))
            tx.session.execute(delete(ChainEvent))
        racers = [make_indexer(ce.ctx) for _ in range(2)]
        errors: list[BaseException] = []

        def run(ix: ChainIndexer) -> None:
            try:
                ix.catch_up()
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(ix,)) for ix in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert stored(ce.ctx) == want


@pytest.mark.slow
def test_a_killed_indexer_process_resumes_without_duplicates(chain_market: LocalMarket, pg_url: str, redis_url: str,
                                                             tmp_path: Path) -> None:
    net = chain_market
    settings = chain_settings(net, db_url=pg_url, redis_url=redis_url, data_dir=tmp_path / "d")
    start = settings.indexer_start_block
    c = net.client(0)
    for seed in (201, 202, 203):  # events spread over ~450 blocks: one block per poll takes seconds
        post_job(net, spec_of(seed=seed))
        c.rpc("anvil_mine", [150])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CROWDTRAIN_COORD_DATABASE_URL": pg_url,
           "CROWDTRAIN_COORD_REDIS_URL": redis_url, "CROWDTRAIN_COORD_REDIS_PREFIX": f"k{uuid.uuid4().hex[:8]}",
           "CROWDTRAIN_COORD_DATA_DIR": str(tmp_path / "d"), "CROWDTRAIN_COORD_RPC_URL": net.rpc_url,
           "CROWDTRAIN_COORD_MARKET_ADDRESS": settings.market_address or "",
           "CROWDTRAIN_COORD_INDEXER_START_BLOCK": str(start), "CROWDTRAIN_COORD_CONFIRMATIONS": "0",
           "CROWDTRAIN_COORD_CHAIN_POLL_INTERVAL_S": "0.05", "CROWDTRAIN_COORD_AUTO_MIGRATE": "true",
           "CROWDTRAIN_COORD_COORDINATOR_ADDRESS": net.dev_accounts[COORD].address}
    cmd = [sys.executable, "-m", "crowdtrain.cli", "coordinator", "index", "--batch-blocks", "1"]
    log = tmp_path / "indexer.log"
    with chain_env(net, settings) as ce, truncated(pg_url):
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: stored(ce.ctx), timeout=60)  # it has stored something ...
        finally:
            p.send_signal(signal.SIGKILL)  # ... and dies mid-way, between two transactions or inside one
            p.wait(10)
        cursor = ce.indexer.cursor()[0]
        head = c.block_number()
        assert start <= cursor < head, "the indexer was meant to die before reaching the head"
        r = subprocess.run([*cmd[:-2], "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"indexed to block {head}" in r.stdout
        assert stored(ce.ctx) == chain_logs(net, ce.indexer.addresses, start)
        assert [n for _, _, n in stored(ce.ctx)].count("JobPosted") == 3


def test_a_reorg_removes_abandoned_events_and_indexes_the_new_branch_once(
        chain_market: LocalMarket, db_url: str, redis_url: str, tmp_path: Path) -> None:
    net = chain_market
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp_path / "d")
    start = settings.indexer_start_block
    assert start is not None
    spec_a, spec_b = spec_of(seed=301), spec_of(seed=302)
    snap = net.chain.snapshot()
    with chain_env(net, settings) as ce:
        job_a = post_job(net, spec_a)
        net.client(5).market.stake(Role.VERIFIER, 1)
        post_job(net, spec_of(seed=303))
        ce.indexer.catch_up()
        before = stored(ce.ctx)
        assert [n for _, _, n in before].count("JobPosted") == 2
        assert ce.env.client.get(f"/jobs/{job_a}").json()["spec_hash"] == "0x" + spec_a.spec_hash().hex()

        net.chain.revert(snap)  # the chain reorganises: those blocks are abandoned ...
        job_b = post_job(net, spec_b)  # ... and a shorter branch holds another job under the same id
        assert job_b == job_a
        res = ce.indexer.catch_up()
        after = stored(ce.ctx)
        assert after == chain_logs(net, ce.indexer.addresses, start)
        assert [n for _, _, n in after] == ["JobPosted"] and not set(after) & set(before)
        job = ce.env.client.get(f"/jobs/{job_b}").json()
        assert job["spec_hash"] == "0x" + spec_b.spec_hash().hex() and job["register_tx"] == after[0][0]
        assert ce.env.client.get(f"/jobs/{job_b + 1}").status_code == 404  # the abandoned second job is gone
        kinds = [e["kind"] for e in ce.env.client.get("/events/history").json()]
        assert "chain.reorg" in kinds
        assert res.cursor == net.client(0).block_number()

        # a longer new branch, built on top: indexed once, nothing from before comes back
        net.client(6).market.stake(Role.VERIFIER, 1)
        ce.indexer.catch_up()
        assert stored(ce.ctx) == chain_logs(net, ce.indexer.addresses, start)


def test_the_loop_rides_out_an_rpc_outage_and_catches_up(chain_market: LocalMarket, redis_url: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    net = chain_market
    settings = chain_settings(net, db_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", redis_url=redis_url,
                              data_dir=tmp_path / "d")
    host, port = net.rpc_url.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.up()
    with chain_env(net, settings) as ce:
        client = ChainClient(proxy.url, timeout=2.0)
        ix = ChainIndexer(ce.ctx, RpcLogSource(client, deadline_s=0.3), ce.indexer.addresses,
                          start_block=ce.indexer.start_block)
        stop = threading.Event()
        loop = threading.Thread(target=ix.run_forever, args=(stop,), kwargs={"interval_s": 0.05, "max_backoff_s": 0.3},
                                daemon=True)
        loop.start()
        try:
            first = post_job(net, spec_of(seed=401))
            wait_for(lambda: ce.env.client.get(f"/jobs/{first}").status_code == 200, timeout=20)
            proxy.down()
            second = post_job(net, spec_of(seed=402))  # straight to anvil: the indexer cannot see it
            wait_for(lambda: "cannot reach" in caplog.text, timeout=20)
            time.sleep(0.5)
            assert loop.is_alive() and ce.env.client.get(f"/jobs/{second}").status_code == 404
            proxy.up()
            wait_for(lambda: ce.env.client.get(f"/jobs/{second}").status_code == 200, timeout=30)
            assert loop.is_alive()
            assert stored(ce.ctx) == chain_logs(net, ce.indexer.addresses, ce.indexer.start_block)
        finally:
            stop.set()
            loop.join(10)
            proxy.down()
