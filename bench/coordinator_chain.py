"""Chain-side coordinator figures on a real anvil: indexer catch-up and settlement passes.

    .venv/bin/python bench/coordinator_chain.py [--jobs 40] [--database sqlite|postgresql]

Posts `--jobs` jobs (each: JobPosted, plus a Staked event from a worker top-up) spread
over ~`--jobs * 5` blocks, then measures (wall clock, this machine):
- index: a fresh indexer catching up from the first block (blocks/s, events/s, ms/poll);
- settle: `--jobs` closed rounds of 2 accepted units committed by one `Settler.run_once()`
  (ms per commitRound, sent and mined), then one finalize pass after the window.
Prints the figures; asserts nothing about speed (docs/benchmarks.md records them).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coordinator.chain_loops import make_indexer  # noqa: E402
from deploy.deploy import DeployConfig  # noqa: E402
from deploy.devnet import start_local_market  # noqa: E402
from protocol.chain import Role  # noqa: E402
from tests.agents.harness import redis_server  # noqa: E402
from tests.coordinator.chain_env import WORKERS, chain_env, chain_settings, ensure_staked, post_job  # noqa: E402
from tests.coordinator.helpers import spec_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    db_url, pg_name = f"sqlite:///{tmp / 'c.sqlite3'}", None
    if args.database == "postgresql":
        import psycopg

        pg_name = f"crowdtrain_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        db_url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
    try:
        with redis_server(tmp / "redis") as redis_url, \
                start_local_market(config=DeployConfig.local(), save_dir=tmp / "dep") as net:
            run(net, db_url, redis_url, tmp, args.jobs)
    finally:
        if pg_name:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def run(net, db_url: str, redis_url: str, tmp: Path, n: int) -> None:  # type: ignore[no-untyped-def]
    ensure_staked(net, WORKERS, Role.WORKER)
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp / "d")
    specs = [spec_of(seed=10_000 + i, units_per_round=2, rounds=1) for i in range(n)]
    c = net.client(0)
    for s in specs:
        post_job(net, s)
        net.client(WORKERS[0]).market.stake(Role.WORKER, 1)
        c.rpc("anvil_mine", [3])
    with chain_env(net, settings) as ce:
        ix = make_indexer(ce.ctx)
        assert ix is not None
        head = c.block_number()
        blocks = head - ix.start_block + 1
        t0, polls, stored = time.perf_counter(), 0, 0
        ix.batch_blocks = 50  # many small polls: per-poll cost shows
        while ix.cursor()[0] < head:
            stored += ix.poll().indexed
            polls += 1
        dt = time.perf_counter() - t0
        print(f"index  ({db_url.split(':')[0]}): {blocks} blocks, {stored} events in {dt:.2f} s: "
              f"{blocks / dt:,.0f} blocks/s, {stored / dt:,.0f} events/s, {1000 * dt / polls:.1f} ms/poll "
              f"(50 blocks per poll)")
        ce.store_test_dataset()
        for job_id, spec in zip(range(1, n + 1), specs):
            if ce.env.client.get(f"/jobs/{job_id}").status_code != 200:
                continue
            assert ce.register(job_id, spec).status_code in (200, 201)
            for i in range(2):
                key = ce.env.accounts[i]
                g = ce.env.claim(key, job_id).json()
                res = ce.env.result_for(g, key, spec, salt=i)
                assert ce.env.submit(key, g["unit_id"], res.body).json()["verdict"] == "accepted"
        assert ce.settler is not None
        t0 = time.perf_counter()
        rep = ce.settler.run_once()
        dt = time.perf_counter() - t0
        k = len(rep.committed)
        print(f"settle: {k} rounds committed in one pass, {dt:.2f} s: {1000 * dt / max(k, 1):.0f} ms per "
              f"commitRound (tree, chain read, send, receipt)")
        net.chain.increase_time(601)
        t0 = time.perf_counter()
        rep = ce.settler.run_once()
        dt = time.perf_counter() - t0
        print(f"settle: {len(rep.finalized)} rounds finalized and {len(rep.completed)} jobs completed in one pass, "
              f"{dt:.2f} s")


if __name__ == "__main__":
    main()
