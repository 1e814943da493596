"""Quality bar: DiLoCo (K units x H inner steps per round) vs synchronous data parallel.

    .venv/bin/python bench/train_quality.py            # the demo GPT, K=4, H=50 (~10 min, 2 cores)
    .venv/bin/python bench/train_quality.py --quick    # seconds; smoke run only

Bar (issue): DiLoCo's final validation loss within 5% of synchronous data-parallel (DP)
training on the same samples, while exchanging at least 50x fewer bytes.

DiLoCo: `training.job.run_job`, the engine's in-process job (every unit runs through the
real unit runner, trace and snapshots included; outer Nesterov SGD from the spec, DiLoCo
defaults lr 0.7, momentum 0.9). DP: what all-reduce DP over K workers computes, one model
trained with the K unit batches of step (r, i) concatenated (batch K*B) for the same
T = R*H steps, with the same `Trainer.step` (AdamW, clip, cosine schedule `lr_at`) and the
same G_0. Both evaluate on the same held-out batches at every round boundary. For scale,
a third curve trains a single worker on unit 0's batches alone (batch B, 1/K of the samples):
DiLoCo should land between it and DP.

Bytes (fp32 payloads, headers ignored, both directions counted alike):
    DP      every step each of K workers sends its gradient (P floats) and receives the
            averaged gradient (P floats):          T * K * 2 * 4P bytes
    DiLoCo  every round each of K workers sends its pseudo-gradient (P floats) and
            receives the new global model (P floats): R * K * 2 * 4P bytes
so the algorithmic ratio is exactly H. The table also lists what crowdtrain's units move
as built (measured blob sizes), which adds the slot optimizer state, snapshots and traces.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_common import BENCH_OUT, common_args, console, demo_spec, ensure_dataset, mib, timed, verdict  # noqa: E402

from protocol.spec import JobSpec  # noqa: E402
from training.data import Dataset  # noqa: E402
from training.determinism import set_determinism  # noqa: E402
from training.job import RoundRecord, evaluate_global, run_job  # noqa: E402
from training.models import count_params  # noqa: E402
from training.outer import initial_global_blob  # noqa: E402
from training.step import Trainer, lr_at  # noqa: E402
from training.state import PARAM, prefixed, to_blob  # noqa: E402
from training.unit import GLOBAL, UnitResult, batch_for, run_unit, start_state  # noqa: E402

LOSS_BAR, BYTES_BAR = 1.05, 50.0


def val_batches(spec: JobSpec, ds: Dataset, n: int) -> list[torch.Tensor]:
    """The held-out batches `training.job.evaluate_global` uses (so both curves share them)."""
    return [ds.val_batch(j, batch_size=spec.batch_size, seq_len=spec.seq_len) for j in range(n)]


def run_sync(spec: JobSpec, ds: Dataset, evals: list[torch.Tensor], units: int, label: str,
             g0: bytes | None = None, trainer: Trainer | None = None) -> list[float]:
    """One model trained on the batches of units 0..units-1 concatenated, for R*H steps.

    units = K: the synchronous DP baseline (batch K*B); units = 1: a single worker on unit
    0's data alone (batch B, a quarter of the samples when K = 4). Starts from `g0` (a
    `crowdtrain/global` blob; default the spec's G_0) and leaves the trained model in
    `trainer` when one is passed. Returns the val loss at steps 0, H, 2H, ..., R*H (nats/token).
    """
    tr = trainer or Trainer(spec)
    tr.load_state(start_state(spec, g0 if g0 is not None else initial_global_blob(spec), None))
    curve = [tr.evaluate(evals)]
    for r in range(spec.rounds):
        for i in range(spec.inner_steps):
            tokens = torch.cat([batch_for(spec, ds, r, k, i) for k in range(units)])
            tr.step(tokens, lr_at(spec, r, i))
        curve.append(tr.evaluate(evals))
        console.print(f"  {label:9s}step {(r + 1) * spec.inner_steps:5d}  val {curve[-1]:.4f}")
    return curve


def with_inner_lr(spec: JobSpec, lr: float) -> JobSpec:
    return spec.model_copy(update={"inner_optimizer": spec.inner_optimizer.model_copy(update={"lr": lr})})


def warm_start(spec: JobSpec, ds: Dataset, evals: list[torch.Tensor], rounds: int, threads: int) -> bytes:
    """G_warm: synchronous DP (batch K*B) from the spec's G_0 for `rounds` rounds of H steps,
    with its own cosine schedule over those steps; returned as a `crowdtrain/global` blob."""
    pre = spec.model_copy(update={"rounds": rounds})
    set_determinism(spec.seed, threads)
    tr = Trainer(pre)
    run_sync(pre, ds, evals, spec.units_per_round, "warm-up", trainer=tr)
    return to_blob(prefixed({n: tr.params[n].detach().clone() for n in tr.names}, PARAM), GLOBAL)


class LeanUnits:
    """`run_job`'s unit_fn: the real unit runner, with the unit's blob sizes tallied and its
    snapshots dropped once counted (a job holds every round's results; R*K units of 6
    snapshots of the demo GPT would be GBs). Blobs counted per unit: G_r (+ slot state
    from round 1) down; output blob, snapshots and trace JSON up."""

    def __init__(self, spec: JobSpec) -> None:
        self.trainer = Trainer(spec)
        self.bytes = 0

    def __call__(self, spec: JobSpec, ds: Dataset, r: int, k: int, g: bytes, slot: bytes | None) -> UnitResult:
        res = run_unit(spec, ds, r, k, g, slot, trainer=self.trainer)
        self.bytes += len(g) + (len(slot) if slot is not None else 0)
        self.bytes += len(res.output_blob) + sum(len(s) for s in res.snapshots.values()) + len(res.trace_json())
        return replace(res, snapshots={})


def plot(path: Path, steps: list[int], diloco: list[float], dp: list[float], one: list[float], title: str) -> str:
    """Write the two curves as a PNG; returns a line saying where (or why not)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG (see the table above)"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(steps, dp, label="synchronous DP (batch K*B)", marker=".")
    ax.plot(steps, diloco, label="DiLoCo (K units, H inner steps)", marker=".")
    ax.plot(steps, one, label="1 worker (batch B, 1/K of the samples)", linestyle="--", color="gray")
    ax.set_xlabel("inner step t = r*H + i (step 0 is off the chart)")
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_title(title, fontsize=9)
    top = max(dp[1:] + diloco[1:] + one[1:]) if len(steps) > 1 else dp[0]  # step 0 (~ln 256) flattens the rest
    ax.set_ylim(min(dp + diloco + one) - 0.05, top + 0.1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"loss curves written to {path}"


def ascii_chart(steps: list[int], a: list[float], b: list[float], width: int = 60, height: int = 14) -> str:
    """Both curves on one character grid: D = DiLoCo, S = synchronous DP, * = both."""
    lo, hi = min(a + b), max(a + b)
    grid = [[" "] * width for _ in range(height)]
    for curve, ch in ((b, "S"), (a, "D")):
        for s, v in zip(steps, curve):
            x = round(s / max(steps[-1], 1) * (width - 1))
            y = height - 1 - round((v - lo) / max(hi - lo, 1e-9) * (height - 1))
            grid[y][x] = "*" if grid[y][x] not in (" ", ch) else ch
    rows = [f"{hi - (hi - lo) * j / (height - 1):6.3f} |" + "".join(g) for j, g in enumerate(grid)]
    return "\n".join(rows + ["       +" + "-" * width, f"        0 .. {steps[-1]} inner steps"])


def main(argv: list[str] | None = None) -> dict:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--rounds", type=int, default=24, help="R (T = R*H steps per method)")
    p.add_argument("--units", type=int, default=4, help="K")
    p.add_argument("--inner-steps", type=int, default=None, help="H (default: the spec's, 50 for the demo)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads, pinned (default 2 = this machine's cores; 1 with --quick)")
    p.add_argument("--batch-size", type=int, default=None, help="B per unit (default: the spec's, 16); DP uses K*B")
    p.add_argument("--inner-lr", type=float, default=None, help="AdamW peak lr for both methods (default: the spec's)")
    p.add_argument("--outer-lr", type=float, default=None, help="DiLoCo outer lr (default: the spec's)")
    p.add_argument("--outer-momentum", type=float, default=None, help="DiLoCo outer Nesterov momentum (default: the spec's)")
    p.add_argument("--dp-inner-lr", type=float, default=None,
                   help="AdamW peak lr for DP and the single worker only (default: DiLoCo's); a tuned baseline")
    p.add_argument("--warm-rounds", type=int, default=0,
                   help="first train DP for this many rounds of H steps; all three methods then continue from "
                        "that checkpoint on fresh batches (seed + 1), as in the DiLoCo paper's main runs")
    p.add_argument("--eval-batches", type=int, default=32, help="held-out batches per evaluation")
    p.add_argument("--png", type=Path, default=BENCH_OUT / "train_quality.png")
    a = p.parse_args(argv)
    ds = ensure_dataset(a.data, quick=a.quick)
    threads = a.threads or (1 if a.quick else 2)
    over = {"units_per_round": a.units, "threads": threads}
    if a.inner_steps:
        over["inner_steps"] = a.inner_steps
    if a.batch_size:
        over["batch_size"] = a.batch_size
    if a.inner_lr is not None:
        over["inner_optimizer"] = {"lr": a.inner_lr}
    outer = {k: v for k, v in (("lr", a.outer_lr), ("momentum", a.outer_momentum)) if v is not None}
    if outer:
        over["outer_optimizer"] = outer
    if not a.quick:
        over["rounds"] = a.rounds
    spec = demo_spec(ds, over, quick=a.quick, sets=a.sets)
    K, H, R, B = spec.units_per_round, spec.inner_steps, spec.rounds, spec.batch_size
    P = count_params(spec)
    console.print(f"[bold]quality[/]: demo GPT ({P:,} params), K={K} H={H} R={R} B={B} seq={spec.seq_len}, "
                  f"T={R * H} steps, {threads} threads, inner lr {spec.inner_optimizer.lr:g} "
                  f"{spec.inner_optimizer.schedule}, outer lr {spec.outer_optimizer.lr:g} momentum "
                  f"{spec.outer_optimizer.momentum:g} nesterov={spec.outer_optimizer.nesterov}"
                  + (f", DP/1-worker inner lr {a.dp_inner_lr:g}" if a.dp_inner_lr is not None else "")
                  + (f", warm start after {a.warm_rounds * H} DP steps" if a.warm_rounds else ""))
    evals = val_batches(spec, ds, a.eval_batches)
    g0 = None
    if a.warm_rounds:
        g0 = warm_start(spec, ds, evals, a.warm_rounds, threads)
        spec = spec.model_copy(update={"seed": spec.seed + 1})
        warm_loss = evaluate_global(spec, ds, g0, a.eval_batches)
        console.print(f"warm start: DP for {a.warm_rounds * H} steps, val {warm_loss:.4f}; continuing on seed {spec.seed}")
    sync_spec = with_inner_lr(spec, a.dp_inner_lr) if a.dp_inner_lr is not None else spec

    def on_round(rec: RoundRecord) -> None:
        console.print(f"  DiLoCo   step {(rec.round + 1) * H:5d}  val {rec.eval_loss:.4f}  ({rec.seconds:.1f} s)")

    set_determinism(spec.seed, threads)
    units = LeanUnits(spec)
    (t_diloco, _), run = timed(lambda: run_job(spec, ds, eval_batches=a.eval_batches, unit_fn=units,
                                               on_round=on_round, initial=g0))
    set_determinism(spec.seed, threads)
    (t_dp, _), dp = timed(lambda: run_sync(sync_spec, ds, evals, K, "DP", g0))
    set_determinism(spec.seed, threads)
    one = run_sync(sync_spec, ds, evals, 1, "1 worker", g0)
    diloco = [run.initial_eval_loss] + [rec.eval_loss for rec in run.rounds]
    steps = [r * H for r in range(R + 1)]

    t = Table(title=f"validation loss (nats/byte, {a.eval_batches} held-out batches of {B}x{spec.seq_len})")
    for col in ("inner step", "DiLoCo", "sync DP", "DiLoCo / DP", "1 worker, batch B", "1 worker / DP"):
        t.add_column(col, justify="right")
    for s, x, y, z in zip(steps, diloco, dp, one):
        t.add_row(str(s), f"{x:.4f}", f"{y:.4f}", f"{x / y:.3f}", f"{z:.4f}", f"{z / y:.3f}")
    console.print(t)
    title = f"demo GPT, K={K}, H={H}, R={R}, same samples" + (f", from DP step {a.warm_rounds * H}" if a.warm_rounds else "")
    console.print(plot(a.png, steps, diloco, dp, one, title))
    if a.quick or "matplotlib" not in sys.modules:
        console.print(ascii_chart(steps, diloco, dp))

    bytes_dp = R * H * K * 2 * 4 * P
    bytes_diloco = R * K * 2 * 4 * P
    loss_ratio = diloco[-1] / dp[-1]
    bytes_ratio = bytes_dp / bytes_diloco
    proto = units.bytes
    s = Table(title="quality bar")
    for col in ("", "DiLoCo", "sync DP", "ratio", "bar", ""):
        s.add_column(col, justify="right")
    s.add_row("final val loss", f"{diloco[-1]:.4f}", f"{dp[-1]:.4f}", f"{loss_ratio:.4f}", f"<= {LOSS_BAR}",
              verdict(loss_ratio <= LOSS_BAR))
    s.add_row("bytes exchanged", mib(bytes_diloco), mib(bytes_dp), f"{bytes_ratio:.1f}x fewer", f">= {BYTES_BAR:g}x",
              verdict(bytes_ratio >= BYTES_BAR))
    s.add_row("crowdtrain blobs as built", mib(proto), mib(bytes_dp), f"{bytes_dp / proto:.1f}x fewer", "-", "")
    s.add_row("wall time", f"{t_diloco:.0f} s", f"{t_dp:.0f} s", "", "", "")
    console.print(s)
    console.print("bytes: fp32 payloads; DP = T*K*(send grad + receive averaged grad); DiLoCo = R*K*(send "
                  "pseudo-gradient + receive global model); as built = G_r + slot state down, output blob + "
                  "snapshots + trace up, per unit")
    return {"params": P, "steps": steps, "diloco": diloco, "dp": dp, "single": one, "loss_ratio": loss_ratio,
            "bytes_dp": bytes_dp, "bytes_diloco": bytes_diloco, "bytes_ratio": bytes_ratio,
            "bytes_protocol": proto, "seconds": {"diloco": t_diloco, "dp": t_dp},
            "finite": all(math.isfinite(v) for v in diloco + dp), "warm_rounds": a.warm_rounds,
            "dp_inner_lr": sync_spec.inner_optimizer.lr}


if __name__ == "__main__":
    main()
