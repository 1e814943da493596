"""The whole market in separate processes, through the `crowdtrain` CLI users run.

anvil + deployed contracts; a coordinator process (real Redis; SQLite in one variant,
PostgreSQL in the other) that judges uploads (`upload_check`) and leaves replay to
verifiers; a model owner posting the tiny MLP job (2 rounds x 2 units); a dishonest worker
faking a segment of its unit; two honest workers, one of them SIGKILLed mid-unit (its
lease expires and the other worker finishes the unit); an auditing verifier replaying
every segment and three more verifiers serving as jurors. Checked at the end:
- the job completes and the model's loss falls (held-out loss of G_0 vs the final model);
- the faked unit was challenged, the jury ruled for the challenger, the cheat was slashed
  and its leaf revoked;
- each honest worker claimed exactly its accepted units; the owner closed the job and got
  the rest back; token conservation holds to the last wei over every holder.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from deploy.deploy import DeployConfig, JuryParams
from deploy.devnet import LocalMarket, start_local_market
from protocol.chain import ChainClient, Role
from protocol.chain.types import DisputeStatus, LeafStatus
from tests.agents.harness import Proc, free_port, pack_test_dataset, redis_server, run_cli, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OWNER, COORD, HONEST_A, HONEST_B, CHEAT, AUDITOR, JURORS = 1, 2, 3, 4, 5, 6, (7, 8, 9)
WINDOW_S = 20          # the job's challenge window
LEASE_TTL_S = 3.0


def spec_toml(dataset: str) -> str:
    """examples/tiny-mlp.toml with the test dataset's hash."""
    text = (ROOT / "examples" / "tiny-mlp.toml").read_text()
    lines = [f'dataset = "{dataset}"' if ln.startswith("dataset =") else ln for ln in text.splitlines()]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
        return
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"crowdtrain_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class World:
    def __init__(self, net: LocalMarket, tmp: Path, coordinator_url: str, dep_file: Path) -> None:
        self.net, self.tmp, self.url, self.dep_file = net, tmp, coordinator_url, dep_file
        self.procs: list[Proc] = []
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)

    def env(self, who: int) -> dict[str, str]:
        return {"CROWDTRAIN_PRIVATE_KEY": self.net.dev_accounts[who].private_key}

    def common(self) -> list[str]:
        return ["--coordinator-url", self.url, "--rpc-url", self.net.rpc_url, "--deployment", str(self.dep_file)]

    def start(self, name: str, who: int, args: list[str]) -> Proc:
        p = Proc(name, args, env=self.env(who), log_dir=self.logs)
        self.procs.append(p)
        return p

    def cli(self, who: int, args: list[str], timeout: float = 180) -> str:
        t = time.monotonic()
        r = run_cli(args, env=self.env(who), timeout=timeout)
        print(f"    crowdtrain {' '.join(args[:2])}: {time.monotonic() - t:.1f} s", flush=True)
        assert r.returncode == 0, f"crowdtrain {' '.join(args)} failed:\n{r.stdout[-4000:]}"
        return r.stdout

    def cli_many(self, calls: list[tuple[int, list[str]]], timeout: float = 180) -> list[str]:
        """Run independent commands in parallel; returns their outputs in order."""
        import subprocess
        import sys

        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "crowdtrain.cli", *args], cwd=ROOT, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **self.env(who)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for who, args in calls]
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
        print(f"    {len(calls)} x crowdtrain {' '.join(calls[0][1][:2])}: {time.monotonic() - t:.1f} s", flush=True)
        for (_, args), p, o in zip(calls, procs, outs):
            assert p.returncode == 0, f"crowdtrain {' '.join(args)} failed:\n{o[-4000:]}"
        return outs

    def address(self, who: int) -> str:
        return self.net.dev_accounts[who].address

    def get(self, path: str, **params: object) -> object:
        r = httpx.get(self.url + path, params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.get("/events/history", limit=1000) if e["kind"] == kind]  # type: ignore[union-attr]

    def lease_of(self, who: int, round: int | None = None) -> dict | None:
        for e in self.events("lease.granted"):
            if e["data"]["worker"] == self.address(who) and (round is None or e["data"]["round"] == round):
                return e["data"]
        return None

    def diagnostics(self) -> str:
        return "\n".join(f"===== {p.name} (alive={p.alive()})\n{p.text()[-2500:]}" for p in self.procs)


def test_market_end_to_end(tmp_path: Path, database_url: str) -> None:
    t0 = time.monotonic()
    dep_dir = tmp_path / "deployments"
    cfg = DeployConfig.local(jury=JuryParams(jury_size=3, commit_period=30, reveal_period=30))
    with redis_server(tmp_path / "redis") as redis_url, \
            start_local_market(config=cfg, save_dir=dep_dir) as net:
        dep_file = dep_dir / "31337.json"
        reader = ChainClient(net.rpc_url, deployment=net.deployment)
        tok, m = reader.token, reader.market
        holders = [a.address for a in net.dev_accounts] + [net.deployment.address("Market"),
                                                           net.deployment.address("JuryArbiter")]
        supply_before = {h: tok.balance_of(h) for h in holders}

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        w = World(net, tmp_path, url, dep_file)
        coord_env = {**w.env(COORD), "CROWDTRAIN_COORD_COORDINATOR_ADDRESS": w.address(COORD),
                     "CROWDTRAIN_COORD_LEASE_TTL_S": str(LEASE_TTL_S), "CROWDTRAIN_COORD_SWEEP_INTERVAL_S": "0.5",
                     "CROWDTRAIN_COORD_INTAKE": "upload_check", "CROWDTRAIN_COORD_CHAIN_CACHE_TTL_S": "0",
                     "CROWDTRAIN_COORD_REDIS_PREFIX": "e2e", "CROWDTRAIN_COORD_PRIVATE_KEY":
                         net.dev_accounts[COORD].private_key}
        coord = Proc("coordinator", ["coordinator", "serve", "--port", str(port), "--data-dir", str(tmp_path / "coord"),
                                     "--database-url", database_url, "--redis-url", redis_url, "--rpc-url", net.rpc_url,
                                     "--market-address", net.deployment.address("Market"), "--migrate"],
                     env=coord_env, log_dir=w.logs)
        w.procs.append(coord)
        try:
            wait_for(lambda: _healthy(url) or not coord.alive(), 60, what="coordinator up")
            assert coord.alive(), coord.text()
            _scenario(w, m, tok, tmp_path)
        except BaseException:
            print(w.diagnostics())
            raise
        finally:
            for p in w.procs:
                p.stop()
        supply_after = {h: tok.balance_of(h) for h in holders}
        assert sum(supply_after.values()) == sum(supply_before.values())  # to the last wei
        print(f"end-to-end ({database_url.split(':')[0]}) took {time.monotonic() - t0:.1f} s")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _scenario(w: World, m, tok, tmp: Path) -> None:  # noqa: ANN001 - m, tok: chain facades
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)

    ds_dir = tmp / "dataset"
    ds_hash = pack_test_dataset(ds_dir)
    spec_file = tmp / "tiny-mlp.toml"
    spec_file.write_text(spec_toml(ds_hash))
    common = w.common()
    chain_only = ["--rpc-url", w.net.rpc_url, "--deployment", str(w.dep_file)]
    owner_before = tok.balance_of(w.address(OWNER))

    # stakes through the CLI users run (in parallel: independent accounts); the jurors' through the API
    w.cli_many([(who, ["worker", "stake", *chain_only]) for who in (HONEST_A, HONEST_B, CHEAT)]
               + [(AUDITOR, ["verifier", "stake", *chain_only])])
    for who in JURORS:
        c = w.net.client(who)
        c.market.stake(Role.VERIFIER, c.market.min_stake(Role.VERIFIER))
    slash_base = int(m.get_stake(w.address(CHEAT), Role.WORKER)["active"])
    mark("staked")
    out = w.cli(OWNER, ["job", "post", str(spec_file), "--dataset", str(ds_dir), "--challenge-window", str(WINDOW_S),
                        *common])
    job_id = _job_id(out)
    budget = int(m.get_job(job_id)["escrow"])
    mark(f"job {job_id} posted")

    def worker(name: str, who: int, *extra: str) -> Proc:
        return w.start(name, who, ["worker", "run", *common, "--data-dir", str(tmp / name), "--job", str(job_id),
                                   "--poll-interval", "0.2", *extra])

    # round 0: the cheat fakes a segment of one unit; honest A trains the other slowly and is
    # SIGKILLed mid-unit; its lease expires and honest B, started after the kill, finishes it
    worker("cheat", CHEAT, "--fault", "fake_segments", "--max-units", "1")
    a = worker("honest-a", HONEST_A, "--step-delay", "0.3")
    lease_a = wait_for(lambda: w.lease_of(HONEST_A, 0), 90, what="A's lease")
    time.sleep(1.0)
    a.signal(signal.SIGKILL)
    a.wait(10)
    assert "accepted" not in a.text()
    mark("A killed mid-unit")
    worker("honest-b", HONEST_B)
    for who in (AUDITOR, *JURORS):  # they read every event since the deployment, whenever they start
        w.start(f"verifier-{who}", who, ["verifier", "run", *common, "--data-dir", str(tmp / f"v{who}"),
                                         *(["--segments", "0", "--no-jury", "--poll-interval", "0.5"] if who == AUDITOR
                                           else ["--no-audit", "--poll-interval", "1"])])
    wait_for(lambda: any(e["data"]["lease_id"] == lease_a["lease_id"] for e in w.events("lease.expired")), 60,
             what="A's lease expired")
    wait_for(lambda: _unit(w, job_id, 0, lease_a["unit"])["status"] == "accepted", 90, what="A's unit redone")
    assert w.lease_of(CHEAT, 0) is not None
    mark("A's unit finished by B")
    worker("honest-a2", HONEST_A)  # a restarted worker joins again

    # the job completes: every round accepted, aggregated and committed on chain
    wait_for(lambda: w.get(f"/jobs/{job_id}")["status"] == "complete", 180, what="job complete")  # type: ignore[index]
    wait_for(lambda: all(r["committed_root"] for r in w.get(f"/jobs/{job_id}/rounds")), 120,  # type: ignore[union-attr]
             what="rounds committed")
    assert len(w.get(f"/jobs/{job_id}/rounds")) == 2  # type: ignore[arg-type]
    mark("job complete, rounds committed")
    for p in w.procs:
        if p.name.startswith(("honest", "cheat")):
            p.stop()

    # the faked unit is challenged and the jury rules against it
    wait_for(lambda: m.dispute_count() >= 1 and m.get_dispute(1)["status"] != DisputeStatus.OPEN, 180,
             what="dispute ruled")
    mark("dispute ruled")
    d = m.get_dispute(1)
    assert d["status"] == DisputeStatus.RULED and d["ruling"] == 2, d
    assert d["worker"] == w.address(CHEAT) and d["challenger"] == w.address(AUDITOR)
    assert m.leaf_status(bytes(d["leaf"])) == LeafStatus.REVOKED
    assert int(m.get_stake(w.address(CHEAT), Role.WORKER)["active"]) == slash_base - slash_base // 2
    assert m.dispute_count() == 1  # the honest units were audited too, and not challenged

    # the windows close; honest workers claim exactly their accepted units
    wait_for(lambda: _windows_over(w, m, job_id), 120, what="challenge windows over")
    reward = int(m.get_job(job_id)["rewardPerUnit"])
    accepted = _accepted_by(w, job_id)
    assert sum(accepted.values()) == 4 and accepted[w.address(CHEAT)] == 1, accepted
    assert accepted.get(w.address(HONEST_B), 0) >= 1  # B finished A's killed unit
    before = {who: tok.balance_of(w.address(who)) for who in (HONEST_A, HONEST_B)}
    claims = w.cli_many([(who, ["worker", "claim", *common, "--job", str(job_id)]) for who in (HONEST_A, HONEST_B)])
    paid = 0
    for who, out in zip((HONEST_A, HONEST_B), claims):
        gained = tok.balance_of(w.address(who)) - before[who]
        assert gained == reward * accepted.get(w.address(who), 0), (who, gained, accepted, out)
        paid += gained
    outs = w.cli_many([(who, ["worker", "earnings", *common, "--job", str(job_id)])
                       for who in (HONEST_A, HONEST_B, CHEAT)])
    assert all("claimable" not in o and "pending" not in o for o in outs[:2]) and "slashed" in outs[2], outs
    mark("claims done")

    # the model's loss falls; the owner downloads it and closes the job
    out_dir = tmp / "download"
    w.cli(OWNER, ["job", "download", str(job_id), "--out", str(out_dir), *common])
    report = json.loads((out_dir / "report.json").read_text())
    assert report["rounds"][-1]["loss_last"] < report["rounds"][0]["loss_first"], report["rounds"]
    _assert_model_improved(ds_dir, spec_file, out_dir / "model.safetensors")
    out = w.cli(OWNER, ["job", "close", str(job_id), *chain_only])
    assert "closeJob refunded" in out
    assert tok.balance_of(w.address(OWNER)) == owner_before - budget + (budget - paid)
    status = w.cli(OWNER, ["job", "status", str(job_id), *common])
    assert "closed" in status and "challenger right" in status, status
    mark("downloaded, closed")


def _job_id(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("job ") and "registered with" in line:
            return int(line.split()[1])
    raise AssertionError(f"no job id in:\n{out}")


def _unit(w: World, job_id: int, round: int, unit: int) -> dict:
    return next(u for u in w.get(f"/jobs/{job_id}/rounds/{round}/units") if u["unit"] == unit)  # type: ignore[union-attr]


def _windows_over(w: World, m, job_id: int) -> bool:  # noqa: ANN001
    """Both windows over by the wall clock with a margin (anvil stamps blocks from the wall clock,
    at whole seconds, so a block mined now carries a time past challengeEnd)."""
    return all(int(m.get_round(job_id, r)["challengeEnd"]) + 2 <= time.time() for r in (0, 1))


def _accepted_by(w: World, job_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in (0, 1):
        for u in w.get(f"/jobs/{job_id}/rounds/{r}/units"):  # type: ignore[union-attr]
            for res in w.get(f"/units/{u['unit_id']}/results"):  # type: ignore[union-attr]
                if res["verdict"] == "accepted":
                    out[res["worker"]] = out.get(res["worker"], 0) + 1
    return out


def _assert_model_improved(ds_dir: Path, spec_file: Path, model: Path) -> None:
    from protocol.spec import load_spec
    from training.data import load_dataset
    from training.determinism import set_determinism
    from training.job import evaluate_global
    from training.outer import initial_global_blob

    spec = load_spec(spec_file)
    set_determinism(spec.seed, spec.threads, "cpu")
    ds = load_dataset(ds_dir, spec.dataset)
    before = evaluate_global(spec, ds, initial_global_blob(spec), batches=8)
    after = evaluate_global(spec, ds, model.read_bytes(), batches=8)
    assert after < before - 0.05, (before, after)
