"""Three coordinator processes sharing PostgreSQL + Redis + a blob directory: concurrent
claims from 30 workers spread over the three never lease a unit twice, a worker racing
itself across processes gets one lease, results submitted anywhere close the round once,
the live event stream of one process carries what the others did, and a client that dies
mid-upload leaves nothing behind."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select

from coordinator.chain import ChainJob
from coordinator.core.config import Settings
from coordinator.core.db import make_engine, session_factory
from coordinator.models import Lease, Result, Unit
from protocol.auth import make_auth_headers
from tests.coordinator.conftest import truncate_all
from tests.coordinator.helpers import TEST_MANIFEST, make_accounts, make_result, sha, spec_of
from tests.coordinator.servers import coordinator_processes

K = 60
CHAIN_ID, MARKET = 31337, "0x" + "11" * 20


def signed(client: httpx.Client, key: LocalAccount, method: str, url: str, path: str, body: Any = None,
           content: bytes | None = None, body_hash: bytes | None = None) -> httpx.Response:
    raw = content if content is not None else (json.dumps(body).encode() if body is not None else b"")
    h = make_auth_headers(key, method=method, path=path, body=raw, body_hash=body_hash, chain_id=CHAIN_ID)
    if body is not None:
        h["content-type"] = "application/json"
    return client.request(method, url + path, content=raw, headers=h, timeout=30)


TRUNCATED = bytes(range(256)) * 40  # 10,240 bytes, of which the client sends half


def abort_upload_midway(url: str, key: LocalAccount) -> None:
    """A real client that dies mid-upload: raw HTTP, half the declared body, then close."""
    host, port = url.removeprefix("http://").split(":")
    d = sha(TRUNCATED)
    h = make_auth_headers(key, method="PUT", path=f"/blobs/{d}", body_hash=bytes.fromhex(d[2:]), chain_id=CHAIN_ID)
    head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"PUT /blobs/{d} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(TRUNCATED)}\r\n{head}\r\n"
                     .encode() + TRUNCATED[:len(TRUNCATED) // 2])
        time.sleep(0.3)  # let the server start streaming it to disk
    time.sleep(0.5)  # and notice the disconnect


@pytest.mark.slow
def test_three_processes_never_lease_a_unit_twice(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    spec = spec_of(units_per_round=K, rounds=1)
    workers = make_accounts(30)
    job = ChainJob(job_id=7, owner=workers[0].address, coordinator=workers[0].address,
                   spec_hash="0x" + spec.spec_hash().hex(), reward_per_unit=10, max_units=K,
                   deadline=int(time.time()) + 86_400, status=1)
    try:
        with coordinator_processes(3, workdir=tmp_path, database_url=pg_url, redis_url=redis_url,
                                   prefix=f"mp{uuid.uuid4().hex[:8]}", stakes={w.address: 1000 for w in workers},
                                   jobs=[job]) as urls, httpx.Client() as client:
            r = signed(client, workers[0], "PUT", urls[0], f"/blobs/{spec.dataset}", content=TEST_MANIFEST,
                       body_hash=bytes.fromhex(spec.dataset[2:]))
            assert r.status_code == 201, r.text  # the job's dataset is present: it is admitted at once
            r = signed(client, workers[0], "POST", urls[0], "/jobs", {"job_id": 7, "spec": spec.model_dump(mode="json")})
            assert r.status_code == 201 and r.json()["status"] == "active", r.text
            stream_lines: list[str] = []
            stream_started = threading.Event()

            def follow() -> None:  # SSE on process 2, from the start of the stream, until all 2K + 4 events (registered, opened, K grants, K results, closed, complete)
                with httpx.stream("GET", urls[2] + "/events", params={"after": "0", "limit": 2 * K + 4},
                                  timeout=60) as resp:
                    stream_started.set()
                    for line in resp.iter_lines():
                        stream_lines.append(line)

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            assert stream_started.wait(30)

            def claim_twice(w: LocalAccount) -> list[dict[str, Any]]:
                # the same worker races itself on two different processes
                a, b = random.sample(urls, 2)
                with ThreadPoolExecutor(2) as ex:
                    rs = list(ex.map(lambda u: signed(client, w, "POST", u, "/jobs/7/claim"), (a, b)))
                assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
                return [r.json() for r in rs]

            def work_round() -> set[int]:
                with ThreadPoolExecutor(30) as ex:
                    pairs = list(ex.map(claim_twice, workers))
                for a, b in pairs:
                    assert a["lease_id"] == b["lease_id"], "one worker got two leases in one job"
                grants = [a for a, _ in pairs]
                units = [g["unit_id"] for g in grants]
                assert len(set(units)) == len(units) == 30, "a unit was leased twice"

                def submit(item: tuple[LocalAccount, dict[str, Any]]) -> str:
                    w, g = item
                    res = make_result(spec, job_id=7, round=0, unit=g["unit"], lease_id=g["lease_id"], key=w,
                                      chain_id=CHAIN_ID, market=MARKET)
                    url = random.choice(urls)
                    for d, data in res.blobs.items():
                        assert signed(client, w, "PUT", url, f"/blobs/{d}", content=data,
                                      body_hash=bytes.fromhex(d[2:])).status_code in (200, 201)
                    r = signed(client, w, "POST", random.choice(urls), f"/units/{g['unit_id']}/result", res.body)
                    assert r.status_code == 200, r.text
                    return str(r.json()["round_status"])

                with ThreadPoolExecutor(30) as ex:
                    statuses = list(ex.map(submit, zip(workers, grants)))
                assert all(s in ("open", "complete") for s in statuses)
                return set(units)

            first = work_round()
            second = work_round()
            assert not first & second and len(first | second) == K
            job_view = client.get(urls[1] + "/jobs/7").json()
            assert job_view["status"] == "complete"
            abort_upload_midway(urls[0], workers[0])
            assert client.head(urls[1] + f"/blobs/{sha(TRUNCATED)}").status_code == 404
            assert not any((tmp_path / "data" / "blobs" / "tmp").iterdir()), "the aborted upload left a file"
            follower.join(60)
            assert not follower.is_alive(), "the event stream did not deliver its events"

        events = [json.loads(x[len("data: "):]) for x in stream_lines if x.startswith("data: ")]
        kinds = [e["kind"] for e in events]
        assert kinds.count("lease.granted") == K and kinds.count("round.closed") == 1
        engine = make_engine(Settings(database_url=pg_url).resolved_database_url)
        with session_factory(engine)() as s:
            assert s.scalar(select(func.count()).select_from(Lease)) == K
            assert s.scalar(select(func.count(func.distinct(Lease.unit_id)))) == K
            assert s.scalar(select(func.count()).select_from(Result).where(Result.verdict == "accepted")) == K
            assert set(s.scalars(select(Unit.status))) == {"accepted"}
            assert set(s.scalars(select(Unit.attempts))) == {1}
        engine.dispose()
    finally:
        truncate_all(pg_url)
