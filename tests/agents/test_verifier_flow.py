"""Audit, challenge and jury on real anvil + coordinator + training: an honest and a dishonest
worker (skipped steps) submit; after the round is committed a verifier replaying every
segment challenges the faked unit, three verifier agents serving as jurors replay the
disputed step and vote by commit-reveal, the ruling slashes the cheat; the honest unit
is claimed after the window; a juror restarted between commit and reveal still reveals."""
from __future__ import annotations

from pathlib import Path

from crowdtrain.owner import OwnerSettings, post_job
from protocol.agentkit import connect_api, connect_chain
from protocol.blobcache import BlobCache
from protocol.chain import Role
from protocol.chain.types import DisputeStatus, LeafStatus
from protocol.hashing import from_hex
from tests.agents.harness import tiny_spec, wait_for
from training.adversary import Fault
from verifier.agent import VerifierAgent
from verifier.settings import VerifierSettings
from worker.agent import StopSignal, WorkerAgent
from worker.earnings import claim_all, earnings
from worker.inputs import InputStore
from worker.settings import WorkerSettings


def _worker(chain, coord, dep: Path, signer, tmp: Path, fault=None) -> WorkerAgent:
    s = WorkerSettings(coordinator_url=coord.url, rpc_url=chain.rpc_url, deployment=dep, poll_interval_s=0.2,
                       data_dir=tmp / f"w-{signer.address[2:8]}", max_units=1)
    api = connect_api(s, signer)
    return WorkerAgent(settings=s, account=signer.account, chain_id=31337, market_address=chain.deployment.address("Market"),
                       api=api, inputs=InputStore(api, BlobCache(s.data_dir / "cache", fetch=api.download_blob)),
                       fault=fault)


def _verifier(chain, coord, dep: Path, signer, tmp: Path, **kw) -> VerifierAgent:
    s = VerifierSettings(coordinator_url=coord.url, rpc_url=chain.rpc_url, deployment=dep, poll_interval_s=0.1,
                         data_dir=tmp / f"v-{signer.address[2:8]}", **kw)
    c = connect_chain(s, signer)
    api = connect_api(s, signer, chain=c)
    return VerifierAgent(settings=s, chain=c, api=api, cache=BlobCache(s.data_dir / "cache", fetch=api.download_blob))


def test_faked_unit_is_challenged_ruled_and_slashed(chain, coord, deployments, dataset, signers, tmp_path):
    dep = deployments / "31337.json"
    ds_dir, ds_hash = dataset
    spec = tiny_spec(ds_hash, H=10, k=5, K=2, R=1)
    owner = OwnerSettings(coordinator_url=coord.url, rpc_url=chain.rpc_url, deployment=dep, data_dir=tmp_path / "o",
                          challenge_window_s=600)
    job_id = post_job(owner, signers[1], spec, ds_dir).job_id
    m = chain.client(0).market
    for i in (3, 4):
        chain.client(i).market.stake(Role.WORKER, m.min_stake(Role.WORKER))
    for i in (5, 6, 7, 8):
        chain.client(i).market.stake(Role.VERIFIER, m.min_stake(Role.VERIFIER))
    honest = _worker(chain, coord, dep, signers[3], tmp_path).run(StopSignal())
    cheat = _worker(chain, coord, dep, signers[4], tmp_path, fault=Fault.SKIP_STEPS).run(StopSignal())
    assert [o.status for o in honest + cheat] == ["accepted", "accepted"]  # the structural intake cannot tell
    auditor_api = connect_api(VerifierSettings(coordinator_url=coord.url), None)  # the coordinator commits round 0
    wait_for(lambda: auditor_api.rounds(job_id)[0].settle_state == "committed", 30, what="round 0 committed")
    slashable = int(m.get_stake(signers[4].address, Role.WORKER)["active"])

    auditor = _verifier(chain, coord, dep, signers[5], tmp_path, audit_segments=0, jury=False)
    jurors = [_verifier(chain, coord, dep, signers[i], tmp_path, audit=False) for i in (6, 7, 8)]
    auditor.poll_once()
    audits = auditor.state.audits
    by_worker = {a["worker"]: a for a in audits.values()}
    assert by_worker[signers[3].address]["verdict"] == "ok"
    bad = by_worker[signers[4].address]
    assert bad["verdict"] == "fault" and bad["dispute"] == 1, bad
    assert m.get_dispute(1)["status"] == DisputeStatus.OPEN

    # the first juror commits, then "crashes": a fresh agent on the same data dir must reveal
    jurors[0].poll_once()
    assert jurors[0].state.votes["1"]["commit_tx"] and jurors[0].state.votes["1"]["choice"] == 2
    restarted = _verifier(chain, coord, dep, signers[6], tmp_path, audit=False)
    assert restarted.state.votes["1"]["salt"] == jurors[0].state.votes["1"]["salt"]
    for j in jurors[1:]:
        j.poll_once()  # commit; the last commit opens the reveal phase early
    for j in (restarted, *jurors[1:]):
        j.poll_once()  # reveal (and resolve once all revealed)
    auditor.poll_once()  # keeper: resolve if nobody did, withdraw the payout
    d = m.get_dispute(1)
    assert d["status"] == DisputeStatus.RULED and d["ruling"] == 2
    slashed = m.get_stake(signers[4].address, Role.WORKER)
    assert int(slashed["active"]) == slashable - slashable * 5000 // 10000
    leaf_hash = from_hex(auditor.api.settlement(job_id, 0).leaves[1].leaf)
    assert m.leaf_status(leaf_hash) == LeafStatus.REVOKED
    assert m.payout_of(signers[5].address) == 0  # withdrawn by the keeper pass
    assert all(j.state.votes["1"].get("revealed_tx") for j in (restarted, *jurors[1:]))

    # the honest unit is claimable once the window is over; the cheat's row says slashed
    chain.chain.increase_time(601)
    wc = connect_chain(WorkerSettings(rpc_url=chain.rpc_url, deployment=dep), signers[3])
    api = connect_api(WorkerSettings(coordinator_url=coord.url), None)
    rows = earnings(api, wc, signers[3].address)
    assert [(r.unit, r.status) for r in rows] == [(0, "claimable")]
    before = wc.token.balance_of(signers[3].address)
    claimed = claim_all(api, wc, signers[3].address)
    assert [r.unit for r, _ in claimed] == [0]
    assert wc.token.balance_of(signers[3].address) - before == spec.payment.reward_per_unit
    assert [(r.status, r.settle_tx is not None) for r in earnings(api, wc, signers[3].address)] == [("claimed", True)]
    cheat_rows = earnings(api, wc, signers[4].address)
    assert [(r.unit, r.status) for r in cheat_rows] == [(1, "slashed")] and cheat_rows[0].settle_tx
