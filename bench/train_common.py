"""Shared set-up for the training benchmarks (bench/train_*.py): spec, dataset, timing, output.

Every bench starts from examples/demo.toml (the demo GPT) with a few overrides, on the
default dataset (this Python's standard library sources, packed by `training.data`). The
spec's `dataset` field is replaced by the hash of the dataset actually packed here, so the
benches also run on a Python whose stdlib packs to other bytes than the demo's hash.

`--quick` swaps in a tiny GPT and a tiny dataset (a slice of the stdlib) so that the smoke
test (tests/bench/test_bench_smoke.py) runs each bench's `main` in seconds; quick figures
say nothing about the bars.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, NamedTuple

from rich.console import Console

from protocol.hashing import to_hex
from protocol.spec import JobSpec, spec_from_dict
from training.data import Dataset, load_dataset, pack, pack_stdlib, stdlib_sources

REPO = Path(__file__).resolve().parents[1]
DEMO_TOML = REPO / "examples" / "demo.toml"
DEFAULT_DATA = REPO / "var" / "data" / "stdlib"
QUICK_DATA = REPO / "var" / "data" / "stdlib-quick"
BENCH_OUT = REPO / "var" / "bench"
QUICK_FILES = 40  # stdlib files in the quick dataset (~0.5 MB): enough windows for tiny batches

# A GPT small enough that a whole bench runs in a few seconds (shape only; not a figure).
QUICK_OVERRIDES: dict[str, Any] = {
    "model": {"kind": "gpt", "n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 16},
    "seq_len": 16, "batch_size": 4, "inner_steps": 10, "rounds": 2,
    "inner_optimizer": {"warmup_steps": 2},
    "verification": {"snapshot_interval": 5, "segments": 2},
}

console = Console(highlight=False, width=110)  # wide enough for the tables in a log file


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `over` merged in (nested tables merged key by key)."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def demo_spec(dataset: Dataset, overrides: dict[str, Any] | None = None, *, quick: bool = False,
              sets: list[str] | None = None) -> JobSpec:
    """examples/demo.toml + (quick overrides) + `overrides` + `--set` items, bound to `dataset`'s hash."""
    data = tomllib.loads(DEMO_TOML.read_text(encoding="utf-8"))
    if quick:
        data = deep_merge(data, QUICK_OVERRIDES)
    data = deep_merge(data, overrides or {})
    data = deep_merge(data, parse_sets(sets or []))
    demo_hash = data["dataset"]
    data["dataset"] = to_hex(dataset.hash)
    if not quick and data["dataset"] != demo_hash.lower():
        console.print(f"[yellow]note:[/] the packed stdlib hashes to {data['dataset']}, not the demo's "
                      f"{demo_hash} (another Python version); benchmarking on the packed one")
    return spec_from_dict(data, f"{DEMO_TOML.name} + bench overrides")


def ensure_dataset(path: Path | None, *, quick: bool) -> Dataset:
    """Load the packed dataset at `path`, packing it first when it has no manifest.

    Default path: var/data/stdlib (the whole stdlib, ~8 MB, a few seconds to pack) or, with
    `quick`, var/data/stdlib-quick (the first QUICK_FILES stdlib files by relative path).
    """
    path = Path(path) if path is not None else (QUICK_DATA if quick else DEFAULT_DATA)
    if not (path / "manifest.json").is_file():
        console.print(f"packing the {'quick ' if quick else ''}stdlib dataset into {path} ...")
        if quick:
            root, files = stdlib_sources()
            pack([(p.relative_to(root).as_posix(), p) for p in files[:QUICK_FILES]], path, source="stdlib-quick")
        else:
            pack_stdlib(path)
    return load_dataset(path)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`--set a.b=VALUE` overrides as a nested dict; VALUE is a TOML value (a bare word is a string).

    >>> parse_sets(["model.n_embd=256", "inner_optimizer.betas=[0.9, 0.99]"])
    {'model': {'n_embd': 256}, 'inner_optimizer': {'betas': [0.9, 0.99]}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with a dotted spec key, e.g. model.n_embd=256")
        try:
            val = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            val = raw.strip()
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = val
    return out


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="tiny model and data; a smoke run, not a figure")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override any spec field of examples/demo.toml (dotted key, TOML value), "
                             "e.g. --set model.n_embd=256; repeatable")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"packed dataset directory (packed if missing; default {DEFAULT_DATA.relative_to(REPO)})")
    return parser


class Clock(NamedTuple):
    """Seconds one call took: `wall` (perf_counter) and `cpu` (this process's CPU time, all threads).

    On a machine other jobs share, wall time also counts the time spent waiting for a core;
    CPU time does not, so with 1 torch thread it is what the call would take on an idle
    machine (cache and memory-bandwidth contention still leak in).
    """

    wall: float
    cpu: float


def timed(fn: Callable[[], Any]) -> tuple[Clock, Any]:
    """(Clock, result) of one call of `fn`."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return Clock(time.perf_counter() - t0, time.process_time() - c0), out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]MISSED[/]"


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"
