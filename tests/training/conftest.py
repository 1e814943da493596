"""Fixtures for the training engine tests: a small real dataset (stdlib sources) and tiny specs."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from protocol.hashing import to_hex
from protocol.spec import JobSpec, parse_spec
from training.data import Dataset, load_dataset, pack
from training.determinism import set_determinism

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# A few hundred KB of real text: the json and email packages of this Python.
SOURCES = sorted([p for d in ("json", "email") for p in (STDLIB / d).rglob("*.py")
                  if "test" not in p.parts], key=lambda p: p.relative_to(STDLIB).as_posix())

MLP_TOML = """
dataset = "{dataset}"
inner_steps = {H}
units_per_round = {K}
rounds = {R}
batch_size = 4
seq_len = 16
seed = 11
threads = {threads}
[model]
kind = "mlp"
context = 4
n_embd = 8
hidden = 32
n_layer = 1
[inner_optimizer]
lr = 1e-2
schedule = "cosine"
warmup_steps = 4
[verification]
snapshot_interval = {k}
segments = {m}
mode = "{mode}"
{tolerance}
[payment]
reward_per_unit = 100
"""

GPT_TOML = """
dataset = "{dataset}"
inner_steps = {H}
units_per_round = {K}
rounds = {R}
batch_size = 4
seq_len = 16
seed = 5
threads = {threads}
[model]
kind = "gpt"
n_layer = 1
n_embd = 32
n_head = 2
block_size = 16
[inner_optimizer]
lr = 3e-3
[verification]
snapshot_interval = {k}
segments = {m}
mode = "{mode}"
{tolerance}
[payment]
reward_per_unit = 100
"""

TOLERANCE = """[verification.tolerance]
loss_rtol = {loss_rtol}
state_rel_l2 = {state_rel_l2}
state_max_abs = {state_max_abs}
"""


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    pack([(p.relative_to(STDLIB).as_posix(), p) for p in SOURCES], out, source="test", shard_bytes=1 << 17)
    return out


@pytest.fixture(scope="session")
def dataset(dataset_dir: Path) -> Dataset:
    return load_dataset(dataset_dir)


def make_spec(dataset: Dataset, *, model: str = "mlp", H: int = 20, k: int = 5, m: int = 2,
              threads: int = 1, mode: str = "exact", tolerance: dict | None = None,
              K: int = 3, R: int = 3) -> JobSpec:
    tol = TOLERANCE.format(**tolerance) if tolerance else ""
    text = (MLP_TOML if model == "mlp" else GPT_TOML).format(
        dataset=to_hex(dataset.hash), H=H, k=k, m=m, K=K, R=R, threads=threads, mode=mode, tolerance=tol)
    return parse_spec(text)


@pytest.fixture
def spec(dataset: Dataset) -> JobSpec:
    s = make_spec(dataset)
    set_determinism(s.seed, s.threads, s.device)
    return s


@pytest.fixture(scope="session")
def mkspec():
    """make_spec(dataset, model="mlp"|"gpt", H=, k=, m=, threads=, mode=, tolerance=)."""
    return make_spec


@pytest.fixture(scope="session")
def sources() -> list[tuple[str, Path]]:
    return [(p.relative_to(STDLIB).as_posix(), p) for p in SOURCES]
