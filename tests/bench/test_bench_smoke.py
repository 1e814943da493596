"""Smoke runs of the training benchmarks (bench/train_*.py --quick): they must not rot.

Each bench's `main` runs on a tiny GPT and a tiny slice of the stdlib (seconds) and its
returned figures are checked for sanity; the figures themselves are not bars here (no
timing assertions in tests), the bars are judged by running the benches for real.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A quick dataset packed once for the module (each bench packs it if missing)."""
    path = tmp_path_factory.mktemp("bench") / "stdlib-quick"
    load("train_common").ensure_dataset(path, quick=True)
    assert (path / "manifest.json").is_file()
    return str(path)


def test_quality_quick(data: str, tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    out = load("train_quality").main(["--quick", "--data", data, "--png", str(png)])
    H = out["steps"][1]
    assert out["steps"] == [0, H, 2 * H] and out["finite"]
    assert len(out["diloco"]) == len(out["dp"]) == len(out["single"]) == 3
    assert out["diloco"][0] == pytest.approx(out["dp"][0]) == out["single"][0]  # same G_0, same held-out batches
    assert out["diloco"][0] == pytest.approx(math.log(256), abs=0.2)  # untrained byte model ~ uniform
    assert out["diloco"][-1] < out["diloco"][0] and out["dp"][-1] < out["dp"][0]
    assert out["loss_ratio"] == pytest.approx(out["diloco"][-1] / out["dp"][-1])
    assert out["bytes_ratio"] == pytest.approx(H)                    # one exchange per H steps
    assert out["bytes_protocol"] > out["bytes_diloco"]               # snapshots + optimizer state on top
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_knobs(data: str, tmp_path: Path) -> None:
    """The sweep flags reach the spec: a warm start from DP, DP's own lr, and --set overrides."""
    out = load("train_quality").main(["--quick", "--data", data, "--png", str(tmp_path / "c.png"),
                                      "--warm-rounds", "1", "--dp-inner-lr", "0.01",
                                      "--set", "model.n_embd=48", "--set", "inner_optimizer.betas=[0.9, 0.99]"])
    assert out["warm_rounds"] == 1 and out["dp_inner_lr"] == 0.01
    assert out["diloco"][0] == pytest.approx(out["dp"][0]) == out["single"][0]  # one shared warm checkpoint
    assert out["diloco"][0] < math.log(256) - 0.5                   # ... already trained, not G_0
    assert out["params"] != load("train_quality").main(["--quick", "--data", data, "--png",
                                                         str(tmp_path / "d.png")])["params"]  # n_embd 48, not 32


def test_parse_sets_errors() -> None:
    common = load("train_common")
    assert common.parse_sets(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        common.parse_sets(["model.n_embd"])


def test_overhead_quick(data: str) -> None:
    out = load("train_overhead").main(["--quick", "--data", data])
    assert out["same_output"]                                       # the baseline trains the same thing
    assert len(out["baseline"]) == len(out["recorded"]) == 2
    assert all(c.wall > 0 and c.cpu > 0 for c in out["baseline"] + out["recorded"])
    assert all(0 < p < r.wall for p, r in zip(out["record_part"], out["recorded"]))
    assert 0 < out["ratio"] < math.inf and 0 < out["ratio_wall"] < math.inf
    assert len(out["pieces"]) == 4 and all(t > 0 for t in out["pieces"].values())
    assert out["snapshots"] == 3 and out["snapshot_bytes"] > 0          # S_0, S_5, S_10 of a 10-step unit


def test_verify_quick(data: str) -> None:
    out = load("train_verify").main(["--quick", "--data", data])
    assert out["accepted"] == out["seeds"] == 3                     # honest work is never rejected
    assert all(out["k"] <= n <= out["m"] * out["k"] for n in out["replayed"])
    assert len(out["train"]) == len(out["verify"]) == 3
    assert 0 < out["ratio"] < math.inf and 0 < out["ratio_wall"] < math.inf
    assert out["detection"] == {0.1: pytest.approx(0.19), 0.25: pytest.approx(0.4375), 0.5: 0.75, 1.0: 1.0}
    assert out["expected_fraction"] == pytest.approx(0.75)          # n=2 segments, m=2: 1.5 distinct of 2
