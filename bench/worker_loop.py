"""Worker loop cost per unit: train vs. record vs. upload vs. submit, on this machine.

    .venv/bin/python bench/worker_loop.py examples/tiny-mlp.toml examples/demo.toml

For each spec (its `dataset` replaced by a small packed test dataset): anvil with the
market deployed, a throwaway redis-server, a coordinator served in a thread (structural
intake, no aggregation, so only the worker's side is timed), the owner's `post_job`, one
staked worker (`worker.agent.WorkerAgent`) running the round's K units. Prints the split
from each `UnitOutcome.timing` (seconds). Not part of `make test`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coordinator.intake import StructuralIntake  # noqa: E402
from crowdtrain.owner import OwnerSettings, post_job  # noqa: E402
from deploy.deploy import DeployConfig  # noqa: E402
from deploy.devnet import start_local_market  # noqa: E402
from protocol.agentkit import connect_api  # noqa: E402
from protocol.blobcache import BlobCache  # noqa: E402
from protocol.chain import Role  # noqa: E402
from protocol.chain.keys import Signer  # noqa: E402
from protocol.spec import parse_spec  # noqa: E402
from tests.agents.harness import coordinator_thread, pack_test_dataset, redis_server  # noqa: E402
from worker.agent import StopSignal, WorkerAgent  # noqa: E402
from worker.inputs import InputStore  # noqa: E402
from worker.settings import WorkerSettings  # noqa: E402


def measure(spec_path: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    with redis_server(tmp / "redis") as redis_url, \
            start_local_market(config=DeployConfig.local(), save_dir=tmp / "dep") as net, \
            coordinator_thread(rpc_url=net.rpc_url, market=net.deployment.address("Market"),
                               coordinator_address=net.dev_accounts[2].address, redis_url=redis_url,
                               data_dir=tmp / "coord", aggregate=False, intake=StructuralIntake()) as coord:
        ds_hash = pack_test_dataset(tmp / "dataset")
        text = "\n".join(f'dataset = "{ds_hash}"' if ln.startswith("dataset =") else ln
                         for ln in Path(spec_path).read_text().splitlines())
        spec = parse_spec(text)
        dep = tmp / "dep" / "31337.json"
        post_job(OwnerSettings(coordinator_url=coord.url, rpc_url=net.rpc_url, deployment=dep, data_dir=tmp / "owner"),
                 Signer(net.dev_accounts[1].account, "anvil dev account 1"), spec, tmp / "dataset")
        client = net.client(3)
        client.market.stake(Role.WORKER, client.market.min_stake(Role.WORKER))
        s = WorkerSettings(coordinator_url=coord.url, rpc_url=net.rpc_url, deployment=dep, data_dir=tmp / "worker",
                           max_units=spec.units_per_round)
        api = connect_api(s, Signer(net.dev_accounts[3].account, "anvil dev account 3"))
        agent = WorkerAgent(settings=s, account=net.dev_accounts[3].account, chain_id=net.chain.chain_id,
                            market_address=net.deployment.address("Market"), api=api,
                            inputs=InputStore(api, BlobCache(s.data_dir / "cache", fetch=api.download_blob)))
        for o in agent.run(StopSignal()):
            t = o.timing
            other = t["total"] - t["train"] - t["record"] - t["upload"] - t["submit"]
            print(f"{spec_path}: unit ({o.round},{o.unit}) {o.status}: total {t['total']:.2f} s = train "
                  f"{t['train']:.2f} + record {t['record']:.3f} + upload {t['upload']:.3f} + submit "
                  f"{t['submit']:.3f} + inputs/other {other:.3f}", flush=True)


if __name__ == "__main__":
    for path in sys.argv[1:] or ["examples/tiny-mlp.toml"]:
        measure(path)
