"""Replay edge cases: withheld snapshots, lazy snapshot fetching, thread-count guard, CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protocol.hashing import to_hex
from training import ReplayError
from training.determinism import set_determinism
from training.evidence import Claim
from training.outer import initial_global_blob
from training.replay import verify_unit
from training.unit import run_unit


def _honest(spec, dataset):
    g = initial_global_blob(spec)
    return g, run_unit(spec, dataset, 0, 2, g)


def test_withheld_snapshots_fall_back_to_earlier_ones(spec, dataset) -> None:
    g, res = _honest(spec, dataset)
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    fetched = []

    def fetch(step: int):
        fetched.append(step)
        return None if step in (k, 2 * k, H) else res.snapshots[step]

    v = verify_unit(spec, dataset, Claim.of(res), res.trace, fetch, res.output_blob, g, None,
                    sample_seed=b"", segments=[2, 3])
    assert v.accepted, v.reasons
    assert [s.replayed_from for s in v.segments] == [0, 3 * k]  # segment 2 replayed from S_0
    assert any("snapshot 10 missing" in n for n in v.notes)
    assert 0 not in fetched  # S_0 is always built from G_r, never fetched


def test_exact_mode_refuses_the_wrong_thread_count(spec, dataset) -> None:
    g, res = _honest(spec, dataset)
    torch.set_num_threads(spec.threads + 1)
    try:
        with pytest.raises(ReplayError, match="threads"):
            verify_unit(spec, dataset, Claim.of(res), res.trace, res.snapshots, res.output_blob, g, None,
                        sample_seed=b"")
    finally:
        set_determinism(spec.seed, spec.threads, spec.device)


def test_calibrate_and_job_commands(dataset, dataset_dir: Path, mkspec, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crowdtrain.cli import app

    spec = mkspec(dataset, H=10, k=5, K=2, R=2)
    f = tmp_path / "spec.toml"
    f.write_text(f"""
name = "cli"
dataset = "{to_hex(dataset.hash)}"
inner_steps = 10
units_per_round = 2
rounds = 2
batch_size = 4
seq_len = 16
seed = 3
[model]
kind = "gpt"
n_layer = 1
n_embd = 16
n_head = 2
block_size = 16
[verification]
snapshot_interval = 5
[payment]
reward_per_unit = 1
""")
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(f), "--data", str(dataset_dir), "--units", "1"])
    assert res.exit_code == 0, res.output
    assert "[verification.tolerance]" in res.output and "loss_rtol =" in res.output and "cpu x2" in res.output
    out = tmp_path / "final.safetensors"
    res = runner.invoke(app, ["train", "job", str(f), "--data", str(dataset_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "round 1:" in res.output and out.stat().st_size > 0
    res = runner.invoke(app, ["calibrate", str(f), "--data", str(tmp_path)])
    assert res.exit_code == 1 and "manifest.json" in res.output
    set_determinism(spec.seed, spec.threads, spec.device)
