"""Test helpers: a running app with signed-request helpers, test specs and results.

Results built here are *structurally* valid (a real `crowdtrain-trace/1` document whose
Merkle root is the signed traceRoot, H/k+1 `crowdtrain/state` snapshots, a
`crowdtrain/output` blob) without running training; test_replay_intake.py covers real
training runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from safetensors.numpy import save as st_save
from sqlalchemy import text

from coordinator.chain import ChainJob, TestOnlyStaticGateway
from coordinator.core.config import Settings
from coordinator.intake import Intake
from coordinator.main import create_app
from coordinator.models import Base
from protocol.auth import make_auth_headers
from protocol.eip712 import WorkResult, sign_work_result
from protocol.spec import JobSpec, spec_from_dict
from training.trace import Trace, TraceLeaf

# A dataset manifest with no shards: enough for job intake's "dataset present" check; the
# StructuralIntake never reads data. Env.register stores it before registering.
TEST_MANIFEST = b'{"format":"crowdtrain-dataset/1","source":"coordinator-tests","train":[],"val":[]}'
SPEC: dict[str, Any] = {
    "model": {"kind": "mlp", "context": 4, "n_embd": 4, "hidden": 8, "n_layer": 1},
    "dataset": "0x" + hashlib.sha256(TEST_MANIFEST).hexdigest(), "inner_steps": 4, "units_per_round": 3, "rounds": 2, "batch_size": 2,
    "seq_len": 8, "seed": 1, "verification": {"snapshot_interval": 2, "segments": 1},
    "payment": {"reward_per_unit": 10},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_accounts(n: int) -> list[LocalAccount]:
    return [Account.from_key(hashlib.sha256(f"coordinator-test-{i}".encode()).digest()) for i in range(n)]


def spec_of(**overrides: Any) -> JobSpec:
    return spec_from_dict({**SPEC, **overrides})


def sha(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


def st_blob(fmt: str, seed: int) -> bytes:
    return st_save({"x": np.full((3,), seed, dtype=np.float32)}, metadata={"format": fmt})


@dataclass
class FakeResult:
    """A structurally valid result for (round, unit): blobs by hash and the submission body."""

    blobs: dict[str, bytes]
    body: dict[str, Any]


def make_result(spec: JobSpec, *, job_id: int, round: int, unit: int, lease_id: str, key: LocalAccount,
                chain_id: int, market: str, salt: int = 0) -> FakeResult:
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    rnd = np.random.default_rng([round, unit, salt])
    input_hash = rnd.bytes(32)
    leaves = tuple(TraceLeaf(i, rnd.bytes(32), rnd.bytes(32), int(rnd.integers(0, 2**62))) for i in range(H))
    trace = Trace(round, unit, input_hash, leaves)
    trace_blob = trace.to_json()
    snaps = [st_blob("crowdtrain/state", 1000 * salt + 10 * unit + j) for j in range(H // k + 1)]
    output = st_blob("crowdtrain/output", 7000 + 1000 * salt + unit)
    wr = WorkResult(job_id=job_id, round=round, unit=unit, input_hash=input_hash,
                    output_hash=hashlib.sha256(output).digest(), trace_root=trace.root)
    sig = sign_work_result(key, wr, chain_id=chain_id, verifying_contract=market)
    blobs = {sha(b): b for b in (trace_blob, output, *snaps)}
    body = {"lease_id": lease_id, "input_hash": "0x" + input_hash.hex(), "output_hash": sha(output),
            "trace_root": "0x" + trace.root.hex(), "trace_blob": sha(trace_blob),
            "snapshot_blobs": [sha(s) for s in snaps], "signature": "0x" + sig.hex()}
    return FakeResult(blobs, body)


@dataclass
class Env:
    settings: Settings
    gateway: TestOnlyStaticGateway
    client: TestClient
    accounts: list[LocalAccount]
    app: Any = field(repr=False)

    @classmethod
    @contextmanager
    def start(cls, settings: Settings, gateway: TestOnlyStaticGateway, intake: Intake,
              accounts: list[LocalAccount], signer: Any = None) -> Iterator["Env"]:
        app = create_app(settings, gateway=gateway, intake=intake, signer=signer)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield cls(settings, gateway, client, accounts, app)

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx

    # -- requests ------------------------------------------------------------------------
    def call(self, key: LocalAccount, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             content: bytes | None = None, sign_path: str | None = None, sign_body: bytes | None = None) -> Any:
        raw = content if content is not None else (json.dumps(body).encode() if body is not None else b"")
        h = make_auth_headers(key, method=method, path=sign_path or path, body=raw if sign_body is None else sign_body,
                              chain_id=self.gateway.chain_id)
        if body is not None:
            h["content-type"] = "application/json"
        h.update(headers or {})
        return self.client.request(method, path, content=raw, headers=h)

    def put_blob(self, key: LocalAccount, data: bytes, *, digest: str | None = None) -> Any:
        d = digest or sha(data)
        h = make_auth_headers(key, method="PUT", path=f"/blobs/{d}", body_hash=bytes.fromhex(d[2:]),
                              chain_id=self.gateway.chain_id)
        return self.client.put(f"/blobs/{d}", content=data, headers=h)

    # -- scenario steps --------------------------------------------------------------------
    def post_chain_job(self, job_id: int, spec: JobSpec, **overrides: Any) -> ChainJob:
        fields: dict[str, Any] = dict(job_id=job_id, owner=self.accounts[0].address, coordinator=self.accounts[0].address,
                                      spec_hash="0x" + spec.spec_hash().hex(), reward_per_unit=spec.payment.reward_per_unit,
                                      max_units=spec.max_units, deadline=int(time.time()) + 86_400, status=1)
        fields.update(overrides)
        job = ChainJob(**fields)
        self.gateway.jobs[job_id] = job
        return job

    def register(self, job_id: int = 7, spec: JobSpec | None = None) -> JobSpec:
        spec = spec or spec_of()
        self.post_chain_job(job_id, spec)
        self.ctx.blobs.put_bytes(TEST_MANIFEST)  # the dataset is present (the intake check)
        r = self.call(self.accounts[0], "POST", "/jobs", {"job_id": job_id, "spec": spec.model_dump(mode="json")})
        assert r.status_code == 201, r.text
        return spec

    def claim(self, key: LocalAccount, job_id: int = 7) -> Any:
        return self.call(key, "POST", f"/jobs/{job_id}/claim")

    def result_for(self, grant: dict[str, Any], key: LocalAccount, spec: JobSpec, *, upload: bool = True,
                   salt: int = 0) -> FakeResult:
        res = make_result(spec, job_id=grant["job_id"], round=grant["round"], unit=grant["unit"],
                          lease_id=grant["lease_id"], key=key, chain_id=self.gateway.chain_id,
                          market=self.gateway.market_address, salt=salt)
        if upload:
            for data in res.blobs.values():
                r = self.put_blob(key, data)
                assert r.status_code in (200, 201), r.text
        return res

    def submit(self, key: LocalAccount, unit_id: int, body: dict[str, Any]) -> Any:
        return self.call(key, "POST", f"/units/{unit_id}/result", body)

    # -- state snapshots for "nothing changed" assertions ------------------------------------
    def state(self) -> dict[str, Any]:
        """Database rows, scheduling keys in Redis (not the auth bookkeeping: nonces and rate
        counters change on every authenticated request by design) and stored blob files."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            db = {t.name: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t.name}"')).all()))
                  for t in Base.metadata.sorted_tables}
        r = ctx.redis.sync
        p = self.settings.redis_prefix
        keys = {}
        for k in sorted(r.scan_iter(f"{p}:*")):
            name = k.decode()
            kind = name.split(":")[1]
            if kind in ("nonce", "rl", "events"):
                continue
            t = r.type(k).decode()
            keys[name] = (t, r.dump(k))
        root = self.settings.resolved_blob_dir
        files = sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())
        return {"db": db, "redis": keys, "blobs": files}


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
