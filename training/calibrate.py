"""Tolerance calibration: how far do honest replays drift when only the hardware differs?

A reference worker runs `units` units of round 0 with the spec's thread count and device.
Each segment of each unit is then replayed from the worker's snapshot with every other
(threads, device) configuration, and we record, per configuration, the largest
  - per-step relative loss difference  |loss - committed| / max(|committed|, 1e-6)
  - end-of-segment per-tensor relative L2 distance and max-abs difference to the
    worker's next snapshot.
Recommended thresholds = margin x the largest honest value, floored (`FLOORS`) so a
configuration that happens to be bit-identical does not yield a zero tolerance. For
scale, the same figures are reported for a small dishonest perturbation (lr x 1.01):
a useful tolerance sits between the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from protocol.spec import JobSpec, Tolerance
from training.data import Dataset
from training.outer import initial_global_blob
from training.replay import state_distance
from training.state import from_blob
from training.step import Trainer, lr_at
from training.unit import STATE, UnitResult, batch_for, run_unit

FLOORS = {"loss_rtol": 1e-6, "state_rel_l2": 1e-6, "state_max_abs": 1e-7}


@dataclass
class Drift:
    loss_rtol: float = 0.0
    state_rel_l2: float = 0.0
    state_max_abs: float = 0.0

    def update(self, loss_rtol: float = 0.0, rel: float = 0.0, mx: float = 0.0) -> None:
        self.loss_rtol = max(self.loss_rtol, loss_rtol)
        self.state_rel_l2 = max(self.state_rel_l2, rel)
        self.state_max_abs = max(self.state_max_abs, mx)


@dataclass
class Calibration:
    reference: str                                   # e.g. "cpu x1"
    honest: dict[str, Drift] = field(default_factory=dict)   # per replay configuration
    dishonest: Drift = field(default_factory=Drift)          # lr x 1.01, same configuration
    margin: float = 10.0

    @property
    def worst(self) -> Drift:
        w = Drift()
        for d in self.honest.values():
            w.update(d.loss_rtol, d.state_rel_l2, d.state_max_abs)
        return w

    def recommended(self) -> Tolerance:
        w = self.worst
        return Tolerance(loss_rtol=max(w.loss_rtol * self.margin, FLOORS["loss_rtol"]),
                         state_rel_l2=max(w.state_rel_l2 * self.margin, FLOORS["state_rel_l2"]),
                         state_max_abs=max(w.state_max_abs * self.margin, FLOORS["state_max_abs"]))

    def to_toml(self) -> str:
        t = self.recommended()
        return ("[verification]\nmode = \"tolerance\"\n\n[verification.tolerance]\n"
                f"loss_rtol = {t.loss_rtol:.3g}\nstate_rel_l2 = {t.state_rel_l2:.3g}\n"
                f"state_max_abs = {t.state_max_abs:.3g}\n")


def _replay_drift(spec: JobSpec, ds: Dataset, res: UnitResult, device: str, lr_scale: float, drift: Drift) -> None:
    k = spec.verification.snapshot_interval
    tr = Trainer(spec, device=device)
    for s in range(0, spec.inner_steps, k):
        tr.load_state(from_blob(res.snapshots[s], STATE))
        for i in range(s, s + k):
            leaf = res.trace.leaves[i]
            loss = tr.step(batch_for(spec, ds, res.round, res.unit, i), lr_at(spec, res.round, i) * lr_scale)
            drift.update(loss_rtol=abs(loss - leaf.loss) / max(abs(leaf.loss), 1e-6))
        rel, mx = state_distance(tr.state(), from_blob(res.snapshots[s + k], STATE))
        drift.update(rel=rel, mx=mx)


def calibrate(spec: JobSpec, dataset: Dataset, *, thread_counts: tuple[int, ...] = (1, 2),
              devices: tuple[str, ...] = ("cpu",), units: int = 2, margin: float = 10.0) -> Calibration:
    """Measure honest drift across (threads, device) configurations; see the module doc.

    Changes torch's thread count while it runs and restores the spec's at the end.
    """
    torch.set_num_threads(spec.threads)
    g = initial_global_blob(spec)
    results = [run_unit(spec, dataset, 0, k, g) for k in range(min(units, spec.units_per_round))]
    cal = Calibration(reference=f"{spec.device} x{spec.threads}", margin=margin)
    for dev in devices:
        for t in thread_counts:
            if (dev, t) == (spec.device, spec.threads) and len(devices) * len(thread_counts) > 1:
                continue
            torch.set_num_threads(t)
            d = cal.honest.setdefault(f"{dev} x{t}", Drift())
            for res in results:
                _replay_drift(spec, dataset, res, dev, 1.0, d)
    torch.set_num_threads(spec.threads)
    for res in results:
        _replay_drift(spec, dataset, res, spec.device, 1.01, cal.dishonest)
    return cal
