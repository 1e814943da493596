"""Settlement on a real anvil: rounds of accepted units are committed with the right root
(claims with the served proofs pay on chain), a round under dispute waits, a lost dispute
revokes the unit, rounds finalize after the window, the job is completed; a quorum close
commits only its accepted units; a reverted commit is surfaced and retried; a commit sent
but never recorded is reconciled; processes racing settlement commit each round once."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from coordinator import crud
from coordinator.jobs import open_round, sweep_deadlines
from coordinator.models import Round
from coordinator.settlement import round_leaves
from deploy.devnet import LocalMarket
from protocol.chain import ChainClient, Evidence, Role, RoundLeaf, Ruling, TraceLeaf, error_class
from protocol.chain.jury import new_salt
from protocol.chain.types import JobStatus, RoundStatus
from protocol.eip712 import WorkResult
from protocol.hashing import from_hex, to_hex
from protocol.merkle import MerkleTree, round_leaf
from tests.coordinator.chain_env import (COORD, OWNER, VERIFIERS, WORKERS, ChainEnv, chain_env, chain_settings,
                                         commit_tx_count, ensure_staked, post_job, signer)
from tests.coordinator.conftest import truncate_all
from tests.coordinator.helpers import spec_of, st_blob
from training.trace import Trace

ROOT = Path(__file__).resolve().parents[2]


def admitted(ce: ChainEnv, spec: Any, **post: Any) -> int:
    """Post `spec` on chain, index it, register it (the dataset is present): an active job."""
    job_id = post_job(ce.net, spec, **post)
    ce.store_test_dataset()
    ce.indexer.catch_up()
    r = ce.register(job_id, spec)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return job_id


def work(ce: ChainEnv, job_id: int, spec: Any, n: int, workers: tuple[int, ...] = (0, 1)) -> list[dict[str, Any]]:
    """`n` units of the current round trained (structurally) and accepted, taking turns
    among `workers` (indexes into the env's accounts: 0 = dev 3, 1 = dev 4)."""
    done = []
    for i in range(n):
        key = ce.env.accounts[workers[i % len(workers)]]
        grant = ce.env.claim(key, job_id).json()
        res = ce.env.result_for(grant, key, spec, salt=i)
        r = ce.env.submit(key, grant["unit_id"], res.body)
        assert r.status_code == 200 and r.json()["verdict"] == "accepted", r.text
        done.append({**grant, "body": res.body, "blobs": res.blobs})
    return done


def expected_root(ce: ChainEnv, job_id: int, round: int, reward: int) -> bytes:
    """The root recomputed from the public API (accepted units' results), independently of settlement."""
    leaves = []
    for u in ce.env.client.get(f"/jobs/{job_id}/rounds/{round}/units").json():
        if u["status"] == "accepted":
            res = next(r for r in ce.env.client.get(f"/units/{u['unit_id']}/results").json() if r["verdict"] == "accepted")
            leaves.append(round_leaf(job_id=job_id, round=round, unit=u["unit"], worker=res["worker"], amount=reward,
                                     result_hash=from_hex(res["result_hash"])))
    return MerkleTree.build(leaves).root


def challenge(ce: ChainEnv, job_id: int, round: int, unit: int, step: int) -> int:
    """Verifier dev 5 challenges `unit`'s leaf at trace `step` with the served proof; returns the arbiter's id."""
    st = ce.env.client.get(f"/jobs/{job_id}/rounds/{round}/settlement").json()
    leaf = next(x for x in st["leaves"] if x["unit"] == unit)
    res = ce.env.client.get(f"/results/{leaf['result_id']}").json()
    trace = Trace.from_json(ce.env.client.get(f"/blobs/{res['trace_blob']}").content)

    def tl(i: int) -> TraceLeaf:
        x = trace.leaves[i]
        return TraceLeaf(step=x.step, batch_digest=x.batch_digest, state_digest=x.state_digest, loss_bits=x.loss_bits)

    ev = Evidence(leaf=RoundLeaf(job_id=job_id, round=round, unit=unit, worker=leaf["worker"], amount=int(leaf["amount"]),
                                 result_hash=from_hex(leaf["result_hash"])),
                  leaf_proof=[from_hex(p) for p in leaf["proof"]],
                  result=WorkResult(job_id=job_id, round=round, unit=unit, input_hash=from_hex(res["input_hash"]),
                                    output_hash=from_hex(res["output_hash"]), trace_root=from_hex(res["trace_root"])),
                  signature=bytes.fromhex(res["signature"][2:]), step=step, cur=tl(step), cur_proof=trace.proof(step),
                  prev=tl(step - 1), prev_proof=trace.proof(step - 1))
    _, tx = ce.net.client(VERIFIERS[0]).market.challenge(ev)
    return int(tx.event("DisputeOpened").args["arbiterDisputeId"])


def jury_rules(net: LocalMarket, arbiter_id: int, choice: Ruling) -> None:
    by_address = {a.address: i for i, a in enumerate(net.dev_accounts)}
    jurors = net.client(0).jury.jurors_of(arbiter_id)
    salts = {j: new_salt() for j in jurors}
    for j in jurors:
        net.client(by_address[j]).jury.commit_vote(arbiter_id, choice, salts[j])
    for j in jurors:  # reveals open once every juror committed
        net.client(by_address[j]).jury.reveal_vote(arbiter_id, choice, salts[j])
    net.client(0).jury.resolve(arbiter_id)


def test_rounds_settle_with_the_right_root_disputes_wait_and_the_job_completes(
        chain_market: LocalMarket, db_url: str, redis_url: str, tmp_path: Path) -> None:
    net = chain_market
    ensure_staked(net, WORKERS, Role.WORKER)
    ensure_staked(net, VERIFIERS, Role.VERIFIER)
    start = net.client(0).block_number() + 1
    spec = spec_of(seed=601, units_per_round=3, rounds=2)
    reward = spec.payment.reward_per_unit
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp_path / "d", round_quorum=0.6)
    m = net.client(0).market
    with chain_env(net, settings) as ce:
        assert ce.settler is not None and ce.env.client.get("/info").json()["coordinator_address"] == \
            net.dev_accounts[COORD].address
        # window 100 s, shorter than the jury's 120 s commit period: a dispute can outlive the window
        job_id = admitted(ce, spec, window=100)
        work(ce, job_id, spec, 3)
        rep = ce.settler.run_once()
        assert [(j, r) for j, r, _ in rep.committed] == [(job_id, 0)]
        view = m.get_round(job_id, 0)
        assert bytes(view["root"]) == expected_root(ce, job_id, 0, reward)
        assert (view["total"], view["numUnits"]) == (3 * reward, 3)
        rnd = ce.env.client.get(f"/jobs/{job_id}/rounds").json()[0]
        assert rnd["settle_state"] == "committed" and rnd["commit_tx"] == rep.committed[0][2]
        assert rnd["committed_root"] == to_hex(bytes(view["root"])) and rnd["challenge_end"] == view["challengeEnd"]
        again = ce.settler.run_once()  # window open: nothing to send
        assert not again.committed and not again.finalized and "challenge window open" in again.waiting[0]

        arbiter_id = challenge(ce, job_id, 0, unit=1, step=2)
        net.chain.increase_time(101)
        rep = ce.settler.run_once()
        assert not rep.finalized and "1 open dispute(s)" in rep.waiting[0]
        jury_rules(net, arbiter_id, Ruling.CHALLENGER_RIGHT)  # the worker loses: its leaf is revoked
        ce.indexer.catch_up()
        units = ce.env.client.get(f"/jobs/{job_id}/rounds/0/units").json()
        assert [u["revoked_by_dispute"] is not None for u in units] == [False, True, False]
        rep = ce.settler.run_once()
        assert [(j, r) for j, r, _ in rep.finalized] == [(job_id, 0)]
        assert m.get_round(job_id, 0)["status"] == RoundStatus.FINALIZED

        # every worker claims with the served proof; the revoked leaf pays nothing
        paid = {}
        for leaf in ce.env.client.get(f"/jobs/{job_id}/rounds/0/settlement").json()["leaves"]:
            worker = net.client(WORKERS[[net.dev_accounts[i].address for i in WORKERS].index(leaf["worker"])])
            rl = RoundLeaf(job_id=job_id, round=0, unit=leaf["unit"], worker=leaf["worker"], amount=int(leaf["amount"]),
                           result_hash=from_hex(leaf["result_hash"]))
            proof = [from_hex(p) for p in leaf["proof"]]
            if leaf["unit"] == 1:
                with pytest.raises(error_class("MarketLeafNotClaimable")):
                    worker.market.claim(rl, proof)
                continue
            before = worker.token.balance_of(worker.address)
            worker.market.claim(rl, proof)
            paid[leaf["unit"]] = worker.token.balance_of(worker.address) - before
        assert paid == {0: reward, 2: reward}

        # round 1 closes at its deadline with a quorum (2 of 3 >= ceil(0.6 * 3)); only those are committed
        g1, _ = ce.ctx.blobs.put_bytes(st_blob("crowdtrain/global", 1))  # (aggregate=false: the test opens it)
        open_round(ce.ctx, job_id=job_id, round=1, checkpoint_blob=g1)
        slashed = net.dev_accounts[WORKERS[1]].address
        r = ce.env.claim(ce.env.accounts[1], job_id)  # the slashed worker is below the minimum stake now
        assert r.status_code == 403 and f"{slashed} has an active worker stake of" in r.json()["detail"]
        work(ce, job_id, spec, 2, workers=(0,))
        with ce.ctx.transaction() as tx:
            tx.session.execute(update(Round).where(Round.job_id == job_id, Round.round == 1).values(deadline=0))
        sweep_deadlines(ce.ctx)
        assert ce.env.client.get(f"/jobs/{job_id}").json()["status"] == "complete"
        rep = ce.settler.run_once()
        assert [(j, r) for j, r, _ in rep.committed] == [(job_id, 1)] and not rep.completed
        view = m.get_round(job_id, 1)
        assert (view["total"], view["numUnits"]) == (2 * reward, 2)
        assert bytes(view["root"]) == expected_root(ce, job_id, 1, reward)
        net.chain.increase_time(101)
        rep = ce.settler.run_once()  # finalizes round 1, then completes the job in the same pass
        assert [(j, r) for j, r, _ in rep.finalized] == [(job_id, 1)] and [j for j, _ in rep.completed] == [job_id]
        assert m.get_job(job_id)["status"] == JobStatus.COMPLETED
        done = ce.env.client.get(f"/jobs/{job_id}").json()
        assert done["chain_status"] == "completed" and done["complete_tx"] == rep.completed[0][1]
        assert not any((ce.settler.run_once().committed, ce.settler.run_once().completed))
        assert (commit_tx_count(net, start, "commitRound"), commit_tx_count(net, start, "finalizeRound"),
                commit_tx_count(net, start, "completeJob")) == (2, 2, 1)

        # the report links every figure to a receipt
        ce.indexer.catch_up()
        report = ce.env.client.get(f"/jobs/{job_id}/report").json()
        r0, r1 = report["rounds"]
        assert r0["commit_tx"] and r0["finalize_tx"] and r0["root"] == to_hex(bytes(m.get_round(job_id, 0)["root"]))
        assert [u["claim_tx"] is not None for u in r0["unit_results"]] == [True, False, True]
        assert [u["revoked_by_dispute"] is not None for u in r0["unit_results"]] == [False, True, False]
        assert r1["total"] == str(2 * reward) and len(r1["unit_results"]) == 2
        assert all(r["train_loss_first"] is not None for r in (r0, r1))
        earned = {w["worker"]: (w["units_accepted"], w["units_revoked"], int(w["earned"]), int(w["claimed"]))
                  for w in report["workers"]}
        w3, w4 = (net.dev_accounts[i].address for i in WORKERS)
        assert earned == {w3: (4, 0, 4 * reward, 2 * reward), w4: (1, 1, 0, 0)}
        assert report["complete_tx"] == done["complete_tx"] and report["register_tx"]
        model = ce.env.client.get(f"/jobs/{job_id}/model")
        assert model.status_code == 409 and "without aggregation" in model.json()["detail"]


def test_a_reverted_commit_is_surfaced_then_retried(chain_market: LocalMarket, redis_url: str, tmp_path: Path) -> None:
    net = chain_market
    ensure_staked(net, WORKERS, Role.WORKER)
    spec = spec_of(seed=611, units_per_round=2, rounds=1)
    reward = spec.payment.reward_per_unit
    settings = chain_settings(net, db_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", redis_url=redis_url,
                              data_dir=tmp_path / "d", settle_retry_s=0.5)
    with chain_env(net, settings) as ce:
        assert ce.settler is not None
        job_id = admitted(ce, spec, budget=reward)  # escrow for one unit; the round needs two
        work(ce, job_id, spec, 2)
        rep = ce.settler.run_once()
        assert not rep.committed and "MarketInsufficientEscrow" in rep.errors[0]
        rnd = ce.env.client.get(f"/jobs/{job_id}/rounds").json()[0]
        assert rnd["settle_state"] == "committing" and "top up the job" in rnd["settle_error"]
        failed = [e for e in ce.env.client.get("/events/history").json() if e["kind"] == "round.settle_failed"]
        assert len(failed) == 1 and failed[0]["data"]["round"] == 0
        assert not ce.settler.run_once().errors  # within the retry delay nothing is sent again
        net.client(OWNER).market.top_up(job_id, reward)
        time.sleep(0.6)  # past settle_retry_s
        rep = ce.settler.run_once()
        assert [(j, r) for j, r, _ in rep.committed] == [(job_id, 0)] and not rep.errors
        rnd = ce.env.client.get(f"/jobs/{job_id}/rounds").json()[0]
        assert rnd["settle_state"] == "committed" and rnd["settle_error"] is None


def test_a_commit_sent_but_never_recorded_is_reconciled(chain_market: LocalMarket, redis_url: str,
                                                        tmp_path: Path) -> None:
    net = chain_market
    ensure_staked(net, WORKERS, Role.WORKER)
    start = net.client(0).block_number() + 1
    settings = chain_settings(net, db_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", redis_url=redis_url,
                              data_dir=tmp_path / "d")
    coord = ChainClient(net.rpc_url, signer(net, COORD), deployment=net.deployment)
    with chain_env(net, settings) as ce:
        assert ce.settler is not None
        specs = {}
        for seed in (621, 622):
            spec = spec_of(seed=seed, units_per_round=2, rounds=1)
            job_id = admitted(ce, spec)
            work(ce, job_id, spec, 2)
            specs[job_id] = spec
        sent = {}
        for job_id, spec in specs.items():
            # a settling process takes the round, sends commitRound ... and dies before recording anything
            taken = ce.settler._take(job_id, 0, state=None, to="committing")
            assert taken is not None
            with ce.ctx.sessions() as s:
                leaves = round_leaves(s, job=taken[2], rnd=taken[1])
            tree = MerkleTree.build([x.leaf for x in leaves])
            tx = coord.market.commit_round(job_id, 0, root=tree.root, total=2 * spec.payment.reward_per_unit,
                                           num_units=2)
            sent[job_id] = (tx.tx_hash, to_hex(tree.root))
        first, second = sent
        assert not ce.settler.run_once().committed  # both rounds are leased to the dead process

        # the first's lease expires: the next pass reads the chain, finds the commit and only records it
        with ce.ctx.transaction() as t:
            t.session.execute(update(Round).where(Round.job_id == first).values(settle_lease_until=0))
        rep = ce.settler.run_once()
        assert not rep.committed and "commit found on chain" in rep.waiting[0]
        rnd = ce.env.client.get(f"/jobs/{first}/rounds").json()[0]
        assert (rnd["settle_state"], rnd["commit_tx"]) == ("committed", None)  # the hash comes from the index
        # the second (still leased to the dead process) is reconciled by the indexer from RoundCommitted
        ce.indexer.catch_up()
        for job_id, (tx_hash, root) in sent.items():
            rnd = ce.env.client.get(f"/jobs/{job_id}/rounds").json()[0]
            assert (rnd["settle_state"], rnd["commit_tx"], rnd["committed_root"]) == ("committed", tx_hash, root)
        assert commit_tx_count(net, start, "commitRound") == 2  # one per round: the dead process's


def test_settlers_deciding_at_the_same_moment_send_one_commit(chain_market: LocalMarket, db_url: str, redis_url: str,
                                                              tmp_path: Path) -> None:
    """Four settlers (own chain clients, same key) all decide to commit the same round at
    once: the database's compare-and-set lets exactly one send."""
    import threading

    from coordinator.settlement import SettleReport, Settler

    net = chain_market
    ensure_staked(net, WORKERS, Role.WORKER)
    start = net.client(0).block_number() + 1
    settings = chain_settings(net, db_url=db_url, redis_url=redis_url, data_dir=tmp_path / "d")
    with chain_env(net, settings) as ce:
        spec = spec_of(seed=641, units_per_round=2, rounds=1)
        job_id = admitted(ce, spec)
        work(ce, job_id, spec, 2)
        settlers = [Settler(ce.ctx, ChainClient(net.rpc_url, signer(net, COORD))) for _ in range(4)]
        reports = [SettleReport() for _ in settlers]
        barrier = threading.Barrier(len(settlers))

        def go(i: int) -> None:
            barrier.wait()
            settlers[i]._commit(reports[i], job_id, 0)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(settlers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(len(r.committed) for r in reports) == 1 and not any(r.errors for r in reports)
        assert commit_tx_count(net, start, "commitRound") == 1
        assert ce.env.client.get(f"/jobs/{job_id}/rounds").json()[0]["settle_state"] == "committed"


@pytest.mark.slow
def test_processes_racing_settlement_commit_each_round_once(chain_market: LocalMarket, pg_url: str, redis_url: str,
                                                             tmp_path: Path) -> None:
    net = chain_market
    ensure_staked(net, WORKERS, Role.WORKER)
    start = net.client(0).block_number() + 1
    settings = chain_settings(net, db_url=pg_url, redis_url=redis_url, data_dir=tmp_path / "d")
    jobs = []
    try:
        with chain_env(net, settings) as ce:
            for seed in (631, 632, 633, 634):
                spec = spec_of(seed=seed, units_per_round=2, rounds=1)
                job_id = admitted(ce, spec)
                work(ce, job_id, spec, 2)
                jobs.append(job_id)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CROWDTRAIN_COORD_DATABASE_URL": pg_url,
               "CROWDTRAIN_COORD_REDIS_URL": redis_url, "CROWDTRAIN_COORD_REDIS_PREFIX": settings.redis_prefix,
               "CROWDTRAIN_COORD_DATA_DIR": str(tmp_path / "d"), "CROWDTRAIN_COORD_RPC_URL": net.rpc_url,
               "CROWDTRAIN_COORD_MARKET_ADDRESS": settings.market_address or "",
               "CROWDTRAIN_COORD_INDEXER_START_BLOCK": str(settings.indexer_start_block),
               "CROWDTRAIN_COORD_CONFIRMATIONS": "0", "CROWDTRAIN_COORD_AGGREGATE": "false",
               "CROWDTRAIN_COORD_PRIVATE_KEY": net.dev_accounts[COORD].private_key}
        cmd = [sys.executable, "-m", "crowdtrain.cli", "coordinator", "settle", "--once"]
        # two processes skip the leader lock (only the database's compare-and-set separates them), one takes it;
        # four rounds keep them committing long enough to overlap
        procs = [subprocess.Popen([*cmd, *(["--ignore-leader"] if i < 2 else [])], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(3)]
        outs = [p.communicate(timeout=180)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 3, outs
        committed = [line.split(":")[0] for out in outs for line in out.splitlines() if line.startswith("committed job")]
        assert sorted(committed) == sorted(f"committed job {j} round 0" for j in jobs), outs  # each round by one process
        assert commit_tx_count(net, start, "commitRound") == len(jobs), outs
        chain = net.client(0).market
        logs = [e for e in chain.events("RoundCommitted", from_block=start) if e.args["jobId"] in jobs]
        assert sorted(e.args["jobId"] for e in logs) == sorted(jobs)
        from coordinator.core.db import make_engine, session_factory

        engine = make_engine(settings.resolved_database_url)
        try:
            with session_factory(engine)() as s:
                rows = {j: crud.get_round(s, job_id=j, round=0) for j in jobs}
                assert {j: (r.settle_state, r.commit_tx) for j, r in rows.items() if r} == \
                    {e.args["jobId"]: ("committed", e.tx_hash) for e in logs}
        finally:
            engine.dispose()
    finally:
        truncate_all(pg_url)
