"""Proof overhead: a unit with its proof of learning vs the same H steps without it.

    .venv/bin/python bench/train_overhead.py           # demo GPT, spec threads (1), 15 runs each
    .venv/bin/python bench/train_overhead.py --quick   # seconds; smoke run only

Bar (issue): recording the trace (a batch digest and a full-state digest per step, the
Merkle tree) and the snapshots adds <= 5% to the time of a unit of the demo model.

recorded  `training.unit.run_unit`: what a worker runs (start state, H steps, per-step batch
          digest + state digest + leaf, snapshot S_0 and every k steps, trace root, output blob).
baseline  the same H steps built here from the engine's public pieces (`start_state`,
          `Trainer.load_state`, `batch_for`, `Trainer.step`, `lr_at`, `output_blob`): start
          state, steps, output blob, no digest, no snapshot, no trace.
Both reuse one Trainer (as a worker does between units) and alternate run by run so machine
noise hits both alike. Each run is timed by the wall clock and by the process's CPU time;
the bar is judged on median(recorded) / median(baseline) of CPU time, which waiting for a
core on a shared machine does not inflate (1 torch thread: CPU time = busy time); the wall
ratio is printed beside it. Each recording piece is also timed alone. The baseline's output
blob must equal the unit runner's byte for byte (same training, so the comparison is fair).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_common import Clock, common_args, console, demo_spec, ensure_dataset, median, timed, verdict  # noqa: E402

from protocol.spec import JobSpec  # noqa: E402
from training.data import Dataset  # noqa: E402
from training.determinism import set_determinism  # noqa: E402
from training.outer import initial_global_blob  # noqa: E402
from training.state import PARAM, select  # noqa: E402
from training.step import Trainer, lr_at  # noqa: E402
from training.trace import Trace, TraceLeaf  # noqa: E402
from training.unit import UnitResult, batch_digest, batch_for, output_blob, run_unit, start_state  # noqa: E402

OVERHEAD_BAR = 1.05


def unrecorded_unit(spec: JobSpec, ds: Dataset, g: bytes, tr: Trainer, round: int = 0, unit: int = 0) -> bytes:
    """Unit (round, unit) from G_r with zero optimizer state, no proof; returns the output blob."""
    s0 = start_state(spec, g, None)
    tr.load_state(s0)
    for i in range(spec.inner_steps):
        tr.step(batch_for(spec, ds, round, unit, i), lr_at(spec, round, i))
    return output_blob(select(s0, PARAM), tr.state())


def components(spec: JobSpec, ds: Dataset, tr: Trainer, res: UnitResult, repeats: int) -> dict[str, float]:
    """Each piece of recording timed alone for one unit (median CPU seconds over `repeats`).

    Pieces timed alone run with warm caches, so their sum is a floor for what they cost
    inside the unit (where the state digest reads 5 MB the step has just written).
    """
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    batches = [batch_for(spec, ds, 0, 0, i) for i in range(H)]
    leaves = res.trace.leaves
    pieces = {
        f"batch digests (H={H})": lambda: [batch_digest(b) for b in batches],
        f"state digests (H={H})": lambda: [tr.digest() for _ in range(H)],
        f"snapshots (H/k+1={H // k + 1})": lambda: [tr.snapshot() for _ in range(H // k + 1)],
        "trace leaves + Merkle root": lambda: Trace(0, 0, res.input_hash, tuple(
            TraceLeaf(lf.step, lf.batch_digest, lf.state_digest, lf.loss_bits) for lf in leaves)).root,
    }
    return {name: median([timed(fn)[0].cpu for _ in range(repeats)]) for name, fn in pieces.items()}


def main(argv: list[str] | None = None) -> dict:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--repeats", type=int, default=15, help="timed runs of each (after one warm-up each)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the spec's)")
    p.add_argument("--inner-steps", type=int, default=None, help="H (default: the spec's)")
    p.add_argument("--snapshot-interval", type=int, default=None, help="k (default: the spec's)")
    a = p.parse_args(argv)
    ds = ensure_dataset(a.data, quick=a.quick)
    over: dict = {"threads": a.threads, "inner_steps": a.inner_steps}
    over = {key: val for key, val in over.items() if val}
    if a.snapshot_interval:
        over["verification"] = {"snapshot_interval": a.snapshot_interval, "segments": 1}
    spec = demo_spec(ds, over, quick=a.quick, sets=a.sets)
    repeats = 2 if a.quick else a.repeats
    set_determinism(spec.seed, spec.threads)
    g = initial_global_blob(spec)
    tr = Trainer(spec)
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    console.print(f"[bold]proof overhead[/]: H={H} steps, snapshot every k={k}, {spec.threads} thread(s), "
                  f"{repeats} runs each after a warm-up")

    ref: UnitResult = run_unit(spec, ds, 0, 0, g, trainer=tr)  # warm-up
    same = unrecorded_unit(spec, ds, g, tr) == ref.output_blob   # warm-up + fairness check
    base: list[Clock] = []
    rec: list[Clock] = []
    rec_part: list[float] = []
    for j in range(repeats):
        for which in (("base", "rec") if j % 2 == 0 else ("rec", "base")):
            if which == "base":
                base.append(timed(lambda: unrecorded_unit(spec, ds, g, tr))[0])
            else:
                c, res = timed(lambda: run_unit(spec, ds, 0, 0, g, trainer=tr))
                rec.append(c)
                rec_part.append(res.timing["record"])
    parts = components(spec, ds, tr, ref, repeats)
    ratio = {kind: median([getattr(c, kind) for c in rec]) / median([getattr(c, kind) for c in base])
             for kind in Clock._fields}
    paired = {kind: median([getattr(r, kind) / getattr(b, kind) for r, b in zip(rec, base)]) for kind in Clock._fields}
    base_cpu = median([c.cpu for c in base])
    snap_bytes = sum(len(s) for s in ref.snapshots.values())

    t = Table(title=f"unit time, seconds (median of {repeats})")
    for col in ("", "wall median", "wall min", "wall max", "CPU median", "CPU per step"):
        t.add_column(col, justify="right")
    for name, xs in (("baseline (no proof)", base), ("unit runner (proof)", rec)):
        w, c = [x.wall for x in xs], [x.cpu for x in xs]
        t.add_row(name, f"{median(w):.3f}", f"{min(w):.3f}", f"{max(w):.3f}", f"{median(c):.3f}",
                  f"{median(c) / H * 1000:.1f} ms")
    t.add_row("  of which Recorder.leaf (wall)", f"{median(rec_part):.3f}", f"{min(rec_part):.3f}",
              f"{max(rec_part):.3f}", "", f"{median(rec_part) / H * 1000:.2f} ms")
    console.print(t)
    c = Table(title=f"recording pieces timed alone, per unit (median CPU of {repeats})")
    for col in ("piece", "seconds", "of baseline"):
        c.add_column(col, justify="right")
    for name, sec in parts.items():
        c.add_row(name, f"{sec:.4f}", f"{sec / base_cpu:.2%}")
    c.add_row("sum", f"{sum(parts.values()):.4f}", f"{sum(parts.values()) / base_cpu:.2%}")
    console.print(c)
    s = Table(title="proof overhead bar")
    for col in ("", "value", "bar", ""):
        s.add_column(col, justify="right")
    s.add_row("median(recorded) / median(baseline), CPU", f"{ratio['cpu']:.4f}", f"<= {OVERHEAD_BAR}",
              verdict(ratio["cpu"] <= OVERHEAD_BAR))
    s.add_row("  same, wall clock", f"{ratio['wall']:.4f}", "", "")
    s.add_row("  median of paired ratios, CPU / wall", f"{paired['cpu']:.4f} / {paired['wall']:.4f}", "", "")
    s.add_row("  1 + pieces timed alone / baseline", f"{1 + sum(parts.values()) / base_cpu:.4f}", "", "")
    s.add_row("snapshots per unit", f"{len(ref.snapshots)} ({snap_bytes / 1e6:.1f} MB)", "", "")
    s.add_row("baseline output blob == unit runner's", "yes" if same else "[red]NO[/]", "", "")
    console.print(s)
    return {"baseline": base, "recorded": rec, "record_part": rec_part, "ratio": ratio["cpu"],
            "ratio_wall": ratio["wall"], "paired": paired, "same_output": same, "pieces": parts,
            "snapshots": len(ref.snapshots), "snapshot_bytes": snap_bytes}


if __name__ == "__main__":
    main()
