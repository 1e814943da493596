"""Stopping and losing leases: Ctrl-C once finishes the unit, twice releases the lease at
once; a lease that expires under a worker (no heartbeat in time) stops its training and
the unit goes back to the queue for someone else."""
from __future__ import annotations

import threading

from crowdtrain.owner import OwnerSettings, post_job
from protocol.agentkit import connect_api
from protocol.blobcache import BlobCache
from protocol.chain import Role
from tests.agents.harness import coordinator_thread, tiny_spec
from worker.agent import NullReporter, StopSignal, WorkerAgent
from worker.inputs import InputStore
from worker.settings import WorkerSettings


class StopAt(NullReporter):
    """Requests a stop `times` times once training reaches `step`."""

    def __init__(self, stop: StopSignal, step: int, times: int) -> None:
        self.stop, self.at, self.times, self.seen = stop, step, times, []

    def step(self, done: int, total: int, loss: float) -> None:
        self.seen.append(done)
        if done == self.at:
            for _ in range(self.times):
                self.stop.request()


def _setup(chain, url, deployments, dataset, signers, tmp_path, **spec_kw):
    ds_dir, ds_hash = dataset
    spec = tiny_spec(ds_hash, **spec_kw)
    owner = OwnerSettings(coordinator_url=url, rpc_url=chain.rpc_url, deployment=deployments / "31337.json",
                          data_dir=tmp_path / "owner")
    job_id = post_job(owner, signers[1], spec, ds_dir).job_id
    c = chain.client(3)
    c.market.stake(Role.WORKER, c.market.min_stake(Role.WORKER))
    return spec, job_id


def _agent(chain, url, deployments, signer, tmp_path, reporter=None, **kw) -> WorkerAgent:
    s = WorkerSettings(coordinator_url=url, rpc_url=chain.rpc_url, deployment=deployments / "31337.json",
                       data_dir=tmp_path / "worker", poll_interval_s=0.1, **kw)
    api = connect_api(s, signer)
    return WorkerAgent(settings=s, account=signer.account, chain_id=31337,
                       market_address=chain.deployment.address("Market"), api=api,
                       inputs=InputStore(api, BlobCache(s.data_dir / "cache", fetch=api.download_blob)),
                       reporter=reporter)


def test_ctrl_c_once_finishes_the_unit_twice_releases_it(chain, coord, deployments, dataset, signers, tmp_path):
    spec, job_id = _setup(chain, coord.url, deployments, dataset, signers, tmp_path)
    stop = StopSignal()
    rep = StopAt(stop, 3, times=1)
    agent = _agent(chain, coord.url, deployments, signers[3], tmp_path, rep)
    out = agent.run(stop)
    assert [o.status for o in out] == ["accepted"] and rep.seen == list(range(1, spec.inner_steps + 1))

    stop = StopSignal()
    rep = StopAt(stop, 3, times=2)
    agent = _agent(chain, coord.url, deployments, signers[3], tmp_path, rep)
    out = agent.run(stop)
    assert [o.status for o in out] == ["released"] and rep.seen == [1, 2, 3]
    unit = agent.api.unit(out[0].unit_id)
    assert unit.status == "queued" and unit.lease_id is None  # back in the queue at once, not after the TTL
    assert agent.api.results(out[0].unit_id) == []


def test_expired_lease_stops_training_and_requeues(chain, deployments, dataset, signers, tmp_path, redis_url):
    with coordinator_thread(rpc_url=chain.rpc_url, market=chain.deployment.address("Market"),
                            coordinator_address=signers[2].address, redis_url=redis_url, data_dir=tmp_path / "c",
                            lease_ttl_s=0.5) as coord:
        spec, job_id = _setup(chain, coord.url, deployments, dataset, signers, tmp_path, H=40, k=5)
        # heartbeats far apart and slow steps: the 0.5 s lease expires mid-unit
        agent = _agent(chain, coord.url, deployments, signers[3], tmp_path, heartbeat_interval_s=1.0, max_units=1)
        agent.step_delay_s = 0.1
        stop = StopSignal()
        t = threading.Timer(30, stop.request)  # a safety net only; the lease loss ends the unit first
        t.start()
        try:
            grant, _ = agent.claim_next()
            assert grant is not None
            out = agent.work(grant, stop)
        finally:
            t.cancel()
        assert out.status == "lease_lost" and "expired" in out.reason, out
        assert agent.api.results(grant.unit_id) == []
        unit = agent.api.unit(grant.unit_id)
        assert unit.status == "queued"
        again, _ = agent.claim_next()  # the same unit is handed out again
        assert again is not None and again.unit_id == grant.unit_id and again.lease_id != grant.lease_id
