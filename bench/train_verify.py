"""Verifier cost: replaying a unit's sampled segments vs training the unit.

    .venv/bin/python bench/train_verify.py             # demo GPT at the demo's m and k
    .venv/bin/python bench/train_verify.py --inner-steps 200    # what a longer unit costs
    .venv/bin/python bench/train_verify.py --quick     # seconds; smoke run only

Bar (issue): replaying the sampled segments of a unit costs <= 15% of training it, at the
default m (segments) and k (snapshot interval) of examples/demo.toml.

train   `training.unit.run_unit` (the worker's unit, proof recording included).
verify  `training.replay.verify_unit` on that honest unit: commitment checks, m segment
        draws from a fresh sample seed, replay from the snapshots, final snapshot and
        output blob check; one run per seed for --seeds seeds (different seeds draw
        different segments; draws are with replacement, so two may coincide), each paired
        with a timed training run, the two alternating in order.
The bar is median(verify) / median(train) in CPU time (see train_common.Clock: waiting for
a core on a shared machine does not count; 1 torch thread); the wall ratio is printed too.
Detection: a worker that fakes a fraction f of
the segments escapes m independent draws with probability (1-f)^m, and n independent
checkers (each drawing its own m) with (1-f)^(m*n) (docs/training.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_common import Clock, common_args, console, demo_spec, ensure_dataset, median, timed, verdict  # noqa: E402

from protocol.hashing import sha256  # noqa: E402
from training.determinism import set_determinism  # noqa: E402
from training.evidence import Claim  # noqa: E402
from training.outer import initial_global_blob  # noqa: E402
from training.replay import verify_unit  # noqa: E402
from training.step import Trainer  # noqa: E402
from training.unit import run_unit  # noqa: E402

COST_BAR = 0.15
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CHECKERS = (1, 2, 3)  # e.g. the coordinator's intake + auditing verifiers, each drawing its own segments


def detection(f: float, m: int) -> float:
    """Probability that m independent uniform segment draws hit a faked one (fraction f faked)."""
    return 1 - (1 - f) ** m


def expected_replay_fraction(H: int, k: int, m: int) -> float:
    """E[distinct segments among m draws of n = H/k] * k / H: the steps replayed per step trained."""
    n = H // k
    return n * (1 - (1 - 1 / n) ** m) * k / H


def main(argv: list[str] | None = None) -> dict:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--seeds", type=int, default=9, help="verifications, one per sample seed, each paired "
                   "with a timed training of the unit")
    p.add_argument("--inner-steps", type=int, default=None, help="H (default: the spec's)")
    p.add_argument("--segments", type=int, default=None, help="m (default: the spec's)")
    p.add_argument("--snapshot-interval", type=int, default=None, help="k (default: the spec's)")
    a = p.parse_args(argv)
    ds = ensure_dataset(a.data, quick=a.quick)
    over: dict = {}
    if a.inner_steps:
        over["inner_steps"] = a.inner_steps
    ver = {key: val for key, val in (("segments", a.segments), ("snapshot_interval", a.snapshot_interval)) if val}
    if ver:
        over["verification"] = ver
    spec = demo_spec(ds, over, quick=a.quick, sets=a.sets)
    seeds = 3 if a.quick else a.seeds
    H, k, m = spec.inner_steps, spec.verification.snapshot_interval, spec.verification.segments
    set_determinism(spec.seed, spec.threads)
    g = initial_global_blob(spec)
    tr = Trainer(spec)
    console.print(f"[bold]verifier cost[/]: H={H}, k={k} ({H // k} segments), m={m}, mode "
                  f"{spec.verification.mode}, {spec.threads} thread(s)")

    res = run_unit(spec, ds, 0, 0, g, trainer=tr)  # warm-up; the unit every verification checks
    claim = Claim.of(res)
    train: list[Clock] = []
    verify: list[Clock] = []
    replayed: list[int] = []
    accepted = 0
    for j in range(seeds):  # a training and a verification per seed, alternating, so drift hits both
        seed = sha256(b"bench/train_verify" + j.to_bytes(4, "little"))
        for which in (("train", "verify") if j % 2 == 0 else ("verify", "train")):
            if which == "train":
                train.append(timed(lambda: run_unit(spec, ds, 0, 0, g, trainer=tr))[0])
                continue
            c, v = timed(lambda: verify_unit(spec, ds, claim, res.trace, res.snapshots, res.output_blob, g, None,
                                              sample_seed=seed))
            verify.append(c)
            replayed.append(sum((r.index + 1) * k - r.replayed_from for r in v.segments))
            accepted += v.accepted
    tc, vc = [c.cpu for c in train], [c.cpu for c in verify]
    ratio = median(vc) / median(tc)
    ratio_wall = median([c.wall for c in verify]) / median([c.wall for c in train])
    step_s = median(tc) / H
    mean_steps = sum(replayed) / len(replayed)

    t = Table(title="seconds (CPU time of this process; wall in the last column)")
    for col in ("", "median", "min", "max", "steps", "per step", "wall median"):
        t.add_column(col, justify="right")
    t.add_row(f"train the unit ({seeds} runs)", f"{median(tc):.3f}", f"{min(tc):.3f}", f"{max(tc):.3f}", str(H),
              f"{step_s * 1000:.1f} ms", f"{median([c.wall for c in train]):.3f}")
    t.add_row(f"verify_unit ({seeds} seeds)", f"{median(vc):.3f}", f"{min(vc):.3f}", f"{max(vc):.3f}",
              f"{mean_steps:.1f} (mean)", f"{median(vc) / max(median(replayed), 1) * 1000:.1f} ms",
              f"{median([c.wall for c in verify]):.3f}")
    console.print(t)
    fixed = median([v - n * step_s for v, n in zip(vc, replayed)])  # commitment checks, loads, output check
    s = Table(title="verifier cost bar")
    for col in ("", "value", "bar", ""):
        s.add_column(col, justify="right")
    s.add_row("median(verify) / median(train), CPU", f"{ratio:.3f}", f"<= {COST_BAR}", verdict(ratio <= COST_BAR))
    s.add_row("  same, wall clock", f"{ratio_wall:.3f}", "", "")
    s.add_row("  median of paired ratios, CPU", f"{median([v / t for v, t in zip(vc, tc)]):.3f}", "", "")
    s.add_row("steps replayed / trained (measured mean)", f"{mean_steps / H:.3f}", "", "")
    s.add_row("  expected from m draws of H/k segments", f"{expected_replay_fraction(H, k, m):.3f}", "", "")
    s.add_row("  with all m draws distinct, m*k/H", f"{m * k / H:.3f}", "", "")
    s.add_row("verify time beyond replayed steps", f"{fixed:.3f} s ({fixed / median(tc):.1%} of train)", "", "")
    s.add_row("honest unit accepted", f"{accepted}/{seeds}", "", "")
    console.print(s)
    d = Table(title=f"detection: a unit faking a fraction f of its segments is caught with 1-(1-f)^(m*n), "
                    f"m={m} draws per checker, n independent checkers")
    d.add_column("f (fraction of segments faked)", justify="right")
    for n in CHECKERS:
        d.add_column(f"caught, n={n}", justify="right")
    for f in FRACTIONS:
        d.add_row(f"{f:g}", *(f"{detection(f, m * n):.1%}" for n in CHECKERS))
    console.print(d)
    return {"H": H, "k": k, "m": m, "train": train, "verify": verify, "ratio": ratio, "ratio_wall": ratio_wall,
            "replayed": replayed,
            "accepted": accepted, "seeds": seeds, "detection": {f: detection(f, m) for f in FRACTIONS},
            "expected_fraction": expected_replay_fraction(H, k, m)}


if __name__ == "__main__":
    main()
