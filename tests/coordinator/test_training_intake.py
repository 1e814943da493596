"""The coordinator judging real training: a worker trains units with the training engine,
uploads and signs them; the TrainingIntake replays sampled segments in a spawned process.
An honest unit is accepted; a unit that skipped steps is rejected and the evidence the
replay produced is stored as a blob that training's `Evidence` reads back."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import sysconfig

from coordinator.core.config import Settings
from coordinator.training_intake import TrainingIntake
from protocol.eip712 import WorkResult, sign_work_result
from protocol.hashing import to_hex
from tests.coordinator.helpers import Env, make_accounts, sha, spec_of, wait_for


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'c.sqlite3'}"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small real dataset: this Python's json package sources, packed by training.data."""
    from training.data import pack_paths

    root = tmp_path_factory.mktemp("datasets")
    tmp = root / "staging"
    digest = pack_paths([Path(sysconfig.get_paths()["stdlib"]) / "json"], tmp)
    final = root / to_hex(digest)
    tmp.rename(final)
    return root, to_hex(digest)


def _env(settings: Settings, gateway: Any, mode: str, datasets: Path) -> Any:
    intake = TrainingIntake(mode=mode, datasets_dir=datasets, processes=1, timeout_s=300)  # type: ignore[arg-type]
    accounts = make_accounts(3)
    for a in accounts:
        gateway.stakes[a.address] = 1_000
    return Env.start(settings, gateway, intake, accounts)


def _upload_and_submit(env: Env, key: Any, grant: dict[str, Any], res: Any) -> Any:
    snaps = [res.snapshots[s] for s in sorted(res.snapshots)]
    for data in (res.trace_json(), res.output_blob, *snaps):
        assert env.put_blob(key, data).status_code in (200, 201)
    wr = WorkResult(job_id=grant["job_id"], round=res.round, unit=res.unit, input_hash=res.input_hash,
                    output_hash=res.output_hash, trace_root=res.trace_root)
    sig = sign_work_result(key, wr, chain_id=env.gateway.chain_id, verifying_contract=env.gateway.market_address)
    body = {"lease_id": grant["lease_id"], "input_hash": to_hex(res.input_hash), "output_hash": to_hex(res.output_hash),
            "trace_root": to_hex(res.trace_root), "trace_blob": sha(res.trace_json()),
            "snapshot_blobs": [sha(s) for s in snaps], "signature": "0x" + sig.hex()}
    return env.submit(key, grant["unit_id"], body)


@pytest.fixture
def trained(packed: tuple[Path, str]) -> Iterator[dict[str, Any]]:
    from training.adversary import Fault, run_dishonest_unit
    from training.data import load_dataset
    from training.determinism import set_determinism
    from training.outer import initial_global_blob
    from training.unit import run_unit

    root, dataset_hash = packed
    spec = spec_of(dataset=dataset_hash, inner_steps=8, units_per_round=2, rounds=1, threads=1,
                   verification={"snapshot_interval": 2, "segments": 4})
    ds = load_dataset(root / dataset_hash, expected_hash=dataset_hash)
    set_determinism(spec.seed, spec.threads)
    g0 = initial_global_blob(spec)
    yield {"spec": spec, "honest": lambda k: run_unit(spec, ds, 0, k, g0),
           "cheat": lambda k: run_dishonest_unit(Fault.SKIP_STEPS, spec, ds, 0, k, g0)}


@pytest.mark.slow
def test_replay_accepts_honest_and_rejects_skipped_steps_with_evidence(
        settings: Settings, gateway: Any, packed: tuple[Path, str], trained: dict[str, Any]) -> None:
    from training.evidence import Evidence

    spec = trained["spec"]
    with _env(settings, gateway, "replay", settings.data_dir / "datasets") as env:
        # the dataset reaches the coordinator as blobs (manifest + shards), as an owner uploads it
        for f in sorted((packed[0] / packed[1]).iterdir()):
            assert env.put_blob(env.accounts[2], f.read_bytes()).status_code == 201
        env.register(7, spec)
        k0, k1 = env.accounts[:2]
        g0, g1 = env.claim(k0).json(), env.claim(k1).json()
        honest = _upload_and_submit(env, k0, g0, trained["honest"](g0["unit"]))
        assert honest.status_code == 200, honest.text
        assert honest.json()["verdict"] == "accepted" and "replayed segments" in honest.json()["reason"]
        cheat = _upload_and_submit(env, k1, g1, trained["cheat"](g1["unit"]))
        assert cheat.status_code == 200, cheat.text
        assert cheat.json()["verdict"] == "rejected"
        view = env.client.get(f"/results/{cheat.json()['result_id']}").json()
        ev = Evidence.from_json(env.client.get(f"/blobs/{view['evidence_blob']}").content)
        assert ev.kind == "step" and ev.proofs_valid()
        assert env.client.get(f"/units/{g1['unit_id']}").json()["status"] == "queued"


@pytest.mark.slow
def test_upload_check_mode_and_missing_dataset_is_503(settings: Settings, gateway: Any, tmp_path: Path,
                                                      packed: tuple[Path, str], trained: dict[str, Any]) -> None:
    spec = trained["spec"]
    with _env(settings, gateway, "replay", tmp_path / "no-datasets") as env:
        # the job is admitted with its dataset uploaded; then the blobs are lost (a wiped disk)
        files = sorted((packed[0] / packed[1]).iterdir())
        for f in files:
            assert env.put_blob(env.accounts[2], f.read_bytes()).status_code == 201
        env.register(7, spec)
        for f in files:
            env.ctx.blobs.path(sha(f.read_bytes())).unlink()
        k0 = env.accounts[0]
        g0 = env.claim(k0).json()
        res = trained["honest"](g0["unit"])
        before = env.state()
        r = _upload_and_submit(env, k0, g0, res)
        assert r.status_code == 503 and "is neither at" in r.json()["detail"]
        after = env.state()
        # the uploads are new blobs; everything else (unit, lease, results) is as before
        assert after["db"]["units"] == before["db"]["units"] and after["db"]["results"] == before["db"]["results"]
        assert after["redis"].keys() == before["redis"].keys()
        assert env.call(k0, "POST", f"/leases/{g0['lease_id']}/heartbeat").status_code == 200
        env.ctx.intake.close()
        env.ctx.intake = TrainingIntake(mode="upload_check", datasets_dir=tmp_path / "no-datasets", timeout_s=300)
        r = _upload_and_submit(env, k0, g0, res)
        assert r.status_code == 200 and r.json()["verdict"] == "accepted", r.text
        assert "upload check passed" in r.json()["reason"]
        env.ctx.intake.close()


@pytest.mark.slow
def test_closed_rounds_run_the_outer_step_and_the_last_gives_the_final_model(
        settings: Settings, gateway: Any, packed: tuple[Path, str]) -> None:
    """G_1 opened by the coordinator, and the final model G_2 it serves, are byte-identical to
    training.job.run_job's; its validation loss per round is run_job's eval loss; the
    report's training losses are the units' trace losses."""
    from training.data import load_dataset
    from training.determinism import set_determinism
    from training.job import run_job
    from training.outer import initial_global_blob, slot_state_from_output
    from training.unit import run_unit

    root, dataset_hash = packed
    spec = spec_of(dataset=dataset_hash, inner_steps=4, units_per_round=2, rounds=2, threads=1,
                   verification={"snapshot_interval": 2, "segments": 1})
    ds = load_dataset(root / dataset_hash, expected_hash=dataset_hash)
    set_determinism(spec.seed, spec.threads)
    g0 = initial_global_blob(spec)
    expected = run_job(spec, ds, rounds=2, eval_batches=4)
    with _env(settings.model_copy(update={"aggregate": True, "datasets_dir": root, "eval_batches": 4}), gateway,
              "upload_check", root) as env:
        env.register(7, spec)
        outputs, losses = {}, {}
        for key in env.accounts[:2]:
            g = env.claim(key).json()
            res = run_unit(spec, ds, 0, g["unit"], g0)
            outputs[g["unit"]] = res.output_blob
            losses[(0, g["unit"])] = [leaf.loss for leaf in res.trace.leaves]
            r = _upload_and_submit(env, key, g, res)
            assert r.status_code == 200 and r.json()["verdict"] == "accepted", r.text
        job = wait_for(lambda: (lambda j: j if j["current_round"] == 1 else None)(env.client.get("/jobs/7").json()),
                       timeout=120)
        assert job["status"] == "active"
        rounds = env.client.get("/jobs/7/rounds").json()
        assert rounds[0]["status"] == "complete" and rounds[0]["accepted"] == 2
        g1 = env.client.get(f"/blobs/{rounds[1]['checkpoint']}").content
        assert g1 == expected.globals[1], "the coordinator's outer step differs from training.job.run_job"
        r = env.client.get("/jobs/7/model")
        assert r.status_code == 409 and "active at round 1 of 2" in r.json()["detail"]
        for key in env.accounts[:2]:
            grant = env.claim(key).json()
            assert grant["round"] == 1 and grant["inputs"]["checkpoint"] == rounds[1]["checkpoint"]
            slot = slot_state_from_output(outputs[grant["unit"]])
            assert grant["inputs"]["slot_state"] == sha(slot)
            res = run_unit(spec, ds, 1, grant["unit"], g1, slot)
            losses[(1, grant["unit"])] = [leaf.loss for leaf in res.trace.leaves]
            r = _upload_and_submit(env, key, grant, res)
            assert r.status_code == 200 and r.json()["verdict"] == "accepted", r.text
        job = wait_for(lambda: (lambda j: j if j["final_model"] else None)(env.client.get("/jobs/7").json()),
                       timeout=120)
        assert job["status"] == "complete"
        model = env.client.get("/jobs/7/model")
        assert model.status_code == 200 and model.content == expected.globals[2]
        assert model.headers["etag"] == f'"{job["final_model"]}"'
        rounds = env.client.get("/jobs/7/rounds").json()
        assert [r["val_loss"] for r in rounds] == pytest.approx([rec.eval_loss for rec in expected.rounds], rel=1e-6)
        report = env.client.get("/jobs/7/report").json()
        for rr in report["rounds"]:
            unit_losses = [losses[(rr["round"], u["unit"])] for u in rr["unit_results"]]
            assert rr["train_loss_first"] == pytest.approx(sum(x[0] for x in unit_losses) / 2)
            assert rr["train_loss_last"] == pytest.approx(sum(x[-1] for x in unit_losses) / 2)
        assert report["final_model"] == job["final_model"] and len(report["workers"]) == 2
        kinds = [e["kind"] for e in env.client.get("/events/history").json()]
        assert kinds.count("round.aggregated") == 2 and kinds.count("round.opened") == 2 and "job.model_ready" in kinds
        env.ctx.intake.close()
