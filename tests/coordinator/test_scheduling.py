"""Claim / heartbeat / release / expiry / submit / round close, on SQLite and PostgreSQL."""
from __future__ import annotations

import time

from coordinator import crud
from coordinator.jobs import open_round
from coordinator.scheduler import sweep
from tests.coordinator.helpers import Env, st_blob


def test_register_is_idempotent_and_lists_rounds_and_units(env: Env) -> None:
    spec = env.register(7)
    again = env.call(env.accounts[1], "POST", "/jobs", {"job_id": 7, "spec": spec.model_dump(mode="json")})
    assert again.status_code == 200 and again.json()["job_id"] == 7
    job = env.client.get("/jobs/7").json()
    assert job["status"] == "active" and job["spec_hash"] == "0x" + spec.spec_hash().hex()
    assert env.client.get(f"/blobs/{job['spec_blob']}").content == spec.canonical_bytes()
    rounds = env.client.get("/jobs/7/rounds").json()
    assert [(r["round"], r["status"], r["units"], r["checkpoint"]) for r in rounds] == [(0, "open", 3, None)]
    units = env.client.get("/jobs/7/rounds/0/units").json()
    assert [(u["unit"], u["status"]) for u in units] == [(0, "queued"), (1, "queued"), (2, "queued")]


def test_claims_hand_out_distinct_units_then_204(env: Env) -> None:
    env.register(7)
    w = env.accounts[:3]
    grants = [env.claim(k).json() for k in w]
    assert sorted(g["unit"] for g in grants) == [0, 1, 2]
    assert len({g["lease_id"] for g in grants}) == 3
    # a worker that already holds a lease gets the same lease back (a restarted worker resumes)
    again = env.claim(w[0]).json()
    assert again["lease_id"] == grants[0]["lease_id"] and again["unit_id"] == grants[0]["unit_id"]
    env.gateway.stakes[env.accounts[3].address] = 1_000
    r = env.claim(env.accounts[3])
    assert r.status_code == 204 and int(r.headers["retry-after"]) >= 1
    units = env.client.get("/jobs/7/rounds/0/units").json()
    assert all(u["status"] == "leased" and u["attempts"] == 1 for u in units)


def test_heartbeat_extends_and_release_requeues(env: Env) -> None:
    env.register(7)
    k = env.accounts[0]
    g = env.claim(k).json()
    time.sleep(0.01)
    hb = env.call(k, "POST", f"/leases/{g['lease_id']}/heartbeat")
    assert hb.status_code == 200 and hb.json()["expires_at"] > g["expires_at"]
    assert env.call(k, "POST", f"/leases/{g['lease_id']}/release").status_code == 204
    unit = env.client.get(f"/units/{g['unit_id']}").json()
    assert unit["status"] == "queued" and unit["lease_id"] is None
    # the released unit is first in line again (FIFO by unit id)
    g2 = env.claim(env.accounts[1]).json()
    assert g2["unit_id"] == g["unit_id"] and g2["lease_id"] != g["lease_id"]
    hb = env.call(k, "POST", f"/leases/{g['lease_id']}/heartbeat")
    assert hb.status_code == 404 and "not live" in hb.json()["detail"]


def test_expired_lease_returns_unit_to_queue(env: Env) -> None:
    env.register(7)
    ctx = env.ctx
    ctx.settings = ctx.settings.model_copy(update={"lease_ttl_s": 0.2})
    k0, k1 = env.accounts[:2]
    g = env.claim(k0).json()
    time.sleep(0.3)
    hb = env.call(k0, "POST", f"/leases/{g['lease_id']}/heartbeat")
    assert hb.status_code == 410 and "expired" in hb.json()["detail"]
    g2 = env.claim(k1).json()
    assert g2["unit_id"] == g["unit_id"]
    with ctx.sessions() as s:
        lease = crud.get_lease(s, lease_id=g["lease_id"])
        assert lease is not None and lease.end_reason == "expired"
        unit = crud.get_unit(s, unit_id=g["unit_id"])
        assert unit is not None and unit.attempts == 2 and unit.current_lease == g2["lease_id"]


def test_sweep_reaps_expired_leases(env: Env) -> None:
    env.register(7)
    ctx = env.ctx
    ctx.settings = ctx.settings.model_copy(update={"lease_ttl_s": 0.1})
    g = env.claim(env.accounts[0]).json()
    time.sleep(0.2)
    sweep(ctx)
    assert env.client.get(f"/units/{g['unit_id']}").json()["status"] == "queued"
    assert ctx.leases.queue_length(job_id=7) == 3


def test_full_job_two_rounds(env: Env) -> None:
    spec = env.register(7)
    ctx = env.ctx
    for round in range(2):
        receipts = []
        for k in env.accounts[:3]:
            g = env.claim(k).json()
            assert g["round"] == round
            res = env.result_for(g, k, spec)
            r = env.submit(k, g["unit_id"], res.body)
            assert r.status_code == 200, r.text
            receipts.append(r.json())
        assert [x["verdict"] for x in receipts] == ["accepted"] * 3
        assert [x["round_status"] for x in receipts] == ["open", "open", "complete"]
        job = env.client.get("/jobs/7").json()
        if round == 0:
            assert job["status"] == "awaiting_aggregation"
            assert env.claim(env.accounts[0]).status_code == 409
            ckpt = st_blob("crowdtrain/global", 1)
            digest, _ = ctx.blobs.put_bytes(ckpt)
            open_round(ctx, job_id=7, round=1, checkpoint_blob=digest)
        else:
            assert job["status"] == "complete"
    rounds = env.client.get("/jobs/7/rounds").json()
    assert [(r["status"], r["accepted"]) for r in rounds] == [("complete", 3), ("complete", 3)]
    assert rounds[1]["checkpoint"] is not None
    kinds = [e["kind"] for e in env.client.get("/events/history", params={"limit": 1000}).json()]
    assert kinds.count("result.accepted") == 6 and kinds.count("round.closed") == 2 and kinds[-1] == "job.complete"
    unit = env.client.get("/jobs/7/rounds/0/units").json()[0]
    results = env.client.get(f"/units/{unit['unit_id']}/results").json()
    assert len(results) == 1 and results[0]["verdict"] == "accepted" and results[0]["result_hash"].startswith("0x")


def test_structurally_bad_result_is_rejected_and_requeued(env: Env) -> None:
    spec = env.register(7)
    k = env.accounts[0]
    g = env.claim(k).json()
    res = env.result_for(g, k, spec)
    res.body["snapshot_blobs"] = res.body["snapshot_blobs"][:-1]  # one snapshot short
    r = env.submit(k, g["unit_id"], res.body)
    assert r.status_code == 200 and r.json()["verdict"] == "rejected"
    assert "snapshots submitted" in r.json()["reason"]
    unit = env.client.get(f"/units/{g['unit_id']}").json()
    assert unit["status"] == "queued"
    assert env.claim(env.accounts[1]).json()["unit_id"] == g["unit_id"]


def test_round_closes_at_quorum_after_deadline(env: Env) -> None:
    spec = env.register(7)
    ctx = env.ctx
    ctx.settings = ctx.settings.model_copy(update={"round_quorum": 0.5, "round_timeout_s": 3600})
    grants = []
    for k in env.accounts[:3]:
        grants.append(env.claim(k).json())
    for g, k in list(zip(grants, env.accounts))[:2]:
        assert env.submit(k, g["unit_id"], env.result_for(g, k, spec).body).json()["verdict"] == "accepted"
    with ctx.transaction() as tx:
        rnd = crud.get_round(tx.session, job_id=7, round=0)
        assert rnd is not None
        rnd.deadline = ctx.now() - 1
    sweep(ctx)
    rounds = env.client.get("/jobs/7/rounds").json()
    assert rounds[0]["status"] == "quorum" and rounds[0]["accepted"] == 2
    late = grants[2]
    assert env.client.get(f"/units/{late['unit_id']}").json()["status"] == "cancelled"
    r = env.submit(env.accounts[2], late["unit_id"], env.result_for(late, env.accounts[2], spec).body)
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    assert env.client.get("/jobs/7").json()["status"] == "awaiting_aggregation"


def test_deadline_without_quorum_extends(env: Env) -> None:
    env.register(7)
    ctx = env.ctx
    with ctx.transaction() as tx:
        rnd = crud.get_round(tx.session, job_id=7, round=0)
        assert rnd is not None
        rnd.deadline = ctx.now() - 1
    sweep(ctx)
    rnd = env.client.get("/jobs/7/rounds").json()[0]
    assert rnd["status"] == "open" and rnd["deadline"] > time.time() + 3000
    kinds = [e["kind"] for e in env.client.get("/events/history").json()]
    assert "round.deadline_extended" in kinds


def test_redis_loss_reseeds_queue(env: Env) -> None:
    """Redis restarted empty: the next claim re-queues every unit that was not accepted."""
    spec = env.register(7)
    ctx = env.ctx
    k0, k1 = env.accounts[:2]
    g = env.claim(k0).json()
    assert env.submit(k0, g["unit_id"], env.result_for(g, k0, spec).body).json()["verdict"] == "accepted"
    r = ctx.redis.sync
    for key in r.scan_iter(f"{env.settings.redis_prefix}:*"):
        r.delete(key)
    got = {env.claim(k).json()["unit_id"] for k in (k0, k1)}
    assert g["unit_id"] not in got and len(got) == 2


def test_claim_skips_a_unit_the_database_closed_before_redis_knew(env: Env) -> None:
    """A round closed at quorum commits in the database, then retires its units in Redis; a
    claim in between must not hand out (or reopen) a cancelled unit."""
    env.register(7)
    ctx = env.ctx
    with ctx.transaction() as tx:
        first = crud.list_units(tx.session, round_id=crud.get_round(tx.session, job_id=7, round=0).id)[0]  # type: ignore[union-attr]
        crud.set_unit_status(tx.session, unit_ids=[first.id], status="cancelled")
    g = env.claim(env.accounts[0]).json()
    assert g["unit_id"] != first.id
    assert env.client.get(f"/units/{first.id}").json()["status"] == "cancelled"
    assert ctx.leases.live_lease_of(unit_id=first.id) is None
    second = env.claim(env.accounts[1]).json()
    assert second["unit_id"] not in (first.id, g["unit_id"])
    assert env.claim(env.accounts[2]).status_code == 204  # the cancelled unit is never handed out
