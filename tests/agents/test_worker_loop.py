"""The owner posts a real job (anvil + coordinator over HTTP); a staked worker claims, trains,
uploads, signs and submits; the coordinator accepts exactly what the worker signed."""
from __future__ import annotations

from pathlib import Path

from crowdtrain.owner import OwnerSettings, post_job
from protocol.agentkit import connect_api
from protocol.blobcache import BlobCache
from protocol.chain import Role
from protocol.eip712 import WorkResult, recover_work_result_signer, work_result_digest
from protocol.hashing import from_hex, to_hex
from protocol.spec import spec_from_json
from tests.agents.harness import tiny_spec
from training.trace import Trace
from worker.agent import StopSignal, WorkerAgent
from worker.inputs import InputStore
from worker.settings import WorkerSettings


def owner_settings(chain, coord, deployments: Path, tmp_path: Path) -> OwnerSettings:
    return OwnerSettings(coordinator_url=coord.url, rpc_url=chain.rpc_url, deployment=deployments / "31337.json",
                         data_dir=tmp_path / "owner", challenge_window_s=60)


def make_worker(chain, coord, deployments: Path, signer, tmp_path: Path, **kw) -> WorkerAgent:
    s = WorkerSettings(coordinator_url=coord.url, rpc_url=chain.rpc_url, deployment=deployments / "31337.json",
                       data_dir=tmp_path / f"worker-{signer.address[:8]}", poll_interval_s=0.2, **kw)
    api = connect_api(s, signer)
    cache = BlobCache(s.data_dir / "cache", fetch=api.download_blob)
    return WorkerAgent(settings=s, account=signer.account, chain_id=chain.chain.chain_id,
                       market_address=chain.deployment.address("Market"), api=api, inputs=InputStore(api, cache))


def test_posted_job_is_trained_and_accepted(chain, coord, deployments, dataset, signers, tmp_path):
    ds_dir, ds_hash = dataset
    spec = tiny_spec(ds_hash)
    posted = post_job(owner_settings(chain, coord, deployments, tmp_path), signers[1], spec, ds_dir)
    m = chain.client(1).market
    job = m.get_job(posted.job_id)
    assert job["escrow"] == spec.budget and job["specHash"] == spec.spec_hash()
    assert job["coordinator"] == signers[2].address
    # the owner's uploads are in the blob store: dataset manifest at the spec's dataset hash
    assert coord.ctx.blobs.exists(spec.dataset) and any(w == "initial checkpoint G_0" for w, _, _ in posted.uploads)

    w = chain.client(3)
    w.market.stake(Role.WORKER, w.market.min_stake(Role.WORKER))
    agent = make_worker(chain, coord, deployments, signers[3], tmp_path, max_units=2)
    outcomes = agent.run(StopSignal())
    assert [(o.round, o.status) for o in outcomes] == [(0, "accepted"), (0, "accepted")], outcomes
    assert sorted(o.unit for o in outcomes) == [0, 1]

    api = agent.api
    units = api.units(posted.job_id, 0)
    assert [u.status for u in units] == ["accepted", "accepted"]
    market = chain.deployment.address("Market")
    for u, o in zip(sorted(units, key=lambda u: u.unit), sorted(outcomes, key=lambda o: o.unit)):
        (res,) = api.results(u.unit_id)
        assert res.worker == signers[3].address and res.verdict == "accepted"
        wr = WorkResult(job_id=posted.job_id, round=0, unit=u.unit, input_hash=from_hex(res.input_hash),
                        output_hash=from_hex(res.output_hash), trace_root=from_hex(res.trace_root))
        sig = bytes.fromhex(res.signature[2:])
        assert recover_work_result_signer(wr, sig, chain_id=31337, verifying_contract=market) == signers[3].address
        assert res.result_hash == o.result_hash == to_hex(work_result_digest(wr, chain_id=31337,
                                                                             verifying_contract=market))
        trace = Trace.from_json(api.get_blob(res.trace_blob))
        assert to_hex(trace.root) == res.trace_root and len(trace.leaves) == spec.inner_steps
        assert len(res.snapshot_blobs) == spec.num_segments + 1
        assert [lf.loss for lf in trace.leaves] == list(o.losses)
    # the worker's cache holds the spec and dataset, each verified against its address
    assert spec_from_json(agent.inputs.cache.read(api.get_job(posted.job_id).spec_blob, verify=True)) == spec
