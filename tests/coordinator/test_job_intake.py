"""Job intake from the chain (real anvil, SQLite and PostgreSQL): a posted job is held with
the reason until its inputs are here, then schedulable; a registration that disagrees with
the chain is refused; a job naming another coordinator is held until the coordinator that
holds that key runs; a job its owner closes on chain stops."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coordinator.admission import refresh_held
from deploy.devnet import LocalMarket
from protocol.chain import Role
from protocol.hashing import sha256, to_hex
from tests.coordinator.chain_env import COORD, chain_env, chain_settings, ensure_staked, post_job
from tests.coordinator.helpers import spec_of

SHARD = b"the quick brown fox jumps over the lazy dog\n" * 200
MANIFEST = json.dumps({"format": "crowdtrain-dataset/1", "source": "intake-test", "val": [],
                       "train": [{"file": "train-00000.bin", "sha256": to_hex(sha256(SHARD)), "tokens": len(SHARD)}]},
                      sort_keys=True, separators=(",", ":")).encode()


def job(ce: Any, job_id: int) -> dict[str, Any]:
    r = ce.env.client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_posted_jobs_are_held_with_the_reason_until_their_inputs_arrive(
        chain_market: LocalMarket, db_url: str, redis_url: str, tmp_path: Path) -> None:
    net = chain_market
    ensure_staked(net, (3,), Role.WORKER)
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp_path / "d")
    with chain_env(net, settings) as ce:
        # a job posted with the hash of a non-canonical encoding of its spec
        spec1 = spec_of(seed=501)
        raw1 = json.dumps(spec1.model_dump(mode="json"), indent=1).encode()
        j1 = post_job(net, spec1, spec_hash=sha256(raw1))
        # a job whose spec and dataset (manifest + one shard) are not uploaded yet
        spec2 = spec_of(seed=502, dataset=to_hex(sha256(MANIFEST)))
        j2 = post_job(net, spec2)
        # a job naming another coordinator (dev 5)
        spec3 = spec_of(seed=503)
        j3 = post_job(net, spec3, coordinator=5)
        ce.indexer.catch_up()

        assert job(ce, j1)["status"] == "held" and "waiting for the spec" in job(ce, j1)["hold_reason"]
        assert ce.owner_upload(j1, raw1).status_code == 201
        held = job(ce, j1)
        assert held["status"] == "held" and held["hold_reason"].startswith("spec hash mismatch")
        assert held["rounds"] is None and held["register_tx"] is not None
        r = ce.register(j1, spec1)  # the canonical spec hashes differently from what the chain holds
        assert r.status_code == 422 and "on chain has specHash" in r.json()["detail"]

        assert "waiting for the spec" in job(ce, j2)["hold_reason"]
        assert ce.env.claim(ce.env.accounts[0], j2).status_code == 409
        assert ce.owner_upload(j2, spec2.canonical_bytes()).status_code == 201
        assert "waiting for the dataset" in job(ce, j2)["hold_reason"]
        assert ce.owner_upload(j2, MANIFEST).status_code == 201
        assert "waiting for 1 of 1 dataset shard(s): train-00000.bin" in job(ce, j2)["hold_reason"]
        r = ce.env.claim(ce.env.accounts[0], j2)
        assert r.status_code == 409 and "waiting for 1 of 1" in r.json()["detail"]
        assert ce.owner_upload(j2, SHARD).status_code == 201
        ready = job(ce, j2)
        assert ready["status"] == "active" and ready["hold_reason"] is None
        assert (ready["rounds"], ready["units_per_round"], ready["spec_blob"]) == (2, 3, to_hex(spec2.spec_hash()))
        assert [r["status"] for r in ce.env.client.get(f"/jobs/{j2}/rounds").json()] == ["open"]
        assert ce.env.claim(ce.env.accounts[0], j2).status_code == 200
        wrong = ce.register(j2, spec_of(seed=999, dataset=spec2.dataset))
        assert wrong.status_code == 422 and "send the exact spec that was posted" in wrong.json()["detail"]
        assert ce.register(10**9, spec2).status_code == 404

        assert ce.env.client.get(f"/jobs/{j3}").status_code == 404  # the indexer tracks only this coordinator's
        ce.store_test_dataset()
        r = ce.register(j3, spec3)
        assert r.status_code == 201 and r.json()["status"] == "held"
        assert r.json()["hold_reason"].startswith("wrong coordinator: the job names " + net.dev_accounts[5].address)
        reasons = [e["data"]["reason"] for e in ce.env.client.get("/events/history").json() if e["kind"] == "job.held"]
        assert any(x.startswith("spec hash mismatch") for x in reasons) and any("wrong coordinator" in x for x in reasons)

    # the operator runs the coordinator that holds dev 5's key on the same database: j3 is its job
    with chain_env(net, settings, key=5) as ce5:
        refresh_held(ce5.ctx)  # what every sweep does
        assert job(ce5, j3)["status"] == "active"
        assert job(ce5, j2)["status"] == "active" and job(ce5, j2)["coordinator"] == net.dev_accounts[COORD].address
        # the owner gives up on the unusable job: after its deadline it closes it on chain
        net.chain.increase_time(86_401)
        net.client(1).market.close_job(j1)
        ce5.indexer.catch_up()
        closed = job(ce5, j1)
        assert closed["status"] == "closed" and closed["chain_status"] == "closed"
