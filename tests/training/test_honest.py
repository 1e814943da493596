"""No false rejections: 60 honest units, exact mode, and tolerance mode replayed with a
different thread count than the worker's (thresholds from the calibration command's code)."""
from __future__ import annotations

import pytest
import torch

from training.adversary import Fault, run_dishonest_unit
from training.calibrate import calibrate
from training.determinism import set_determinism
from training.evidence import Claim
from training.job import run_job
from training.jury import CHALLENGER_RIGHT, judge
from training.outer import initial_global_blob, slot_state_from_output
from training.replay import verify_unit


def _verify_all(spec, dataset, run, *, threads: int) -> int:
    """Verify every unit of `run` on every segment with `threads`; returns units checked."""
    torch.set_num_threads(threads)
    slots: dict[int, bytes] = {}
    n = 0
    for rec in run.rounds:
        g = run.globals[rec.round]
        for res in rec.results:
            v = verify_unit(spec, dataset, Claim.of(res), res.trace, res.snapshots, res.output_blob, g,
                            slots.get(res.unit), sample_seed=b"", segments=list(range(spec.num_segments)))
            assert v.accepted, (rec.round, res.unit, v.reasons)
            n += 1
        slots.update({res.unit: slot_state_from_output(res.output_blob) for res in rec.results})
    return n


def test_honest_units_exact_mode(dataset, mkspec) -> None:
    spec = mkspec(dataset, H=10, k=2, K=10, R=3)
    set_determinism(spec.seed, spec.threads, spec.device)
    run = run_job(spec, dataset, eval_batches=0)
    assert _verify_all(spec, dataset, run, threads=spec.threads) == 30


@pytest.fixture(scope="module")
def tolerance_spec(dataset, mkspec):
    """A tiny GPT (its results do depend on the thread count) in tolerance mode, calibrated
    across 1 and 2 threads exactly as `crowdtrain calibrate` does."""
    base = mkspec(dataset, model="gpt", H=10, k=5, threads=1)
    set_determinism(base.seed, 1, "cpu")
    cal = calibrate(base, dataset, thread_counts=(1, 2), units=2)
    assert cal.worst.state_rel_l2 > 0  # 1 vs 2 threads really differ for this model
    t = cal.recommended()
    # honest drift sits well below a 1% lr change: the tolerance separates them
    assert cal.dishonest.state_rel_l2 > 10 * t.state_rel_l2
    return mkspec(dataset, model="gpt", H=10, k=5, threads=1, mode="tolerance", K=5, R=6,
                  tolerance={"loss_rtol": t.loss_rtol, "state_rel_l2": t.state_rel_l2,
                             "state_max_abs": t.state_max_abs})


def test_honest_units_tolerance_mode_other_thread_count(dataset, tolerance_spec) -> None:
    spec = tolerance_spec
    set_determinism(spec.seed, 1, "cpu")  # the worker: 1 thread
    run = run_job(spec, dataset, eval_batches=0)
    assert _verify_all(spec, dataset, run, threads=2) == 30  # the verifier: 2 threads
    set_determinism(spec.seed, 1, "cpu")


@pytest.mark.parametrize("fault", [Fault.CHANGED_LR, Fault.SKIP_STEPS, Fault.INTERPOLATE, Fault.LAZY_INITIAL,
                                   Fault.WRONG_DATA, Fault.CHANGED_PRECISION, Fault.POISON_OUTPUT])
def test_faults_caught_in_tolerance_mode(dataset, tolerance_spec, fault: Fault) -> None:
    spec = tolerance_spec
    set_determinism(spec.seed, 1, "cpu")
    g = initial_global_blob(spec)
    res = run_dishonest_unit(fault, spec, dataset, 0, 1, g, None, seed=1)
    torch.set_num_threads(2)
    try:
        v = verify_unit(spec, dataset, Claim.of(res), res.trace, res.snapshots, res.output_blob, g, None,
                        sample_seed=b"", segments=list(range(spec.num_segments)))
        assert not v.accepted and v.evidence is not None and v.evidence.proofs_valid(), v
        ev = v.evidence
        k = spec.verification.snapshot_interval
        r = judge(spec, dataset, ev, global_ckpt=g, slot_state=None,
                  anchor_snapshot=res.snapshots.get(ev.anchor_step), output_blob=res.output_blob,
                  final_snapshot=res.snapshots[spec.inner_steps],
                  next_snapshot=res.snapshots.get(ev.step + 1) if (ev.step + 1) % k == 0 else None)
        assert r.ruling == CHALLENGER_RIGHT, (ev.reason, r.reason)
    finally:
        set_determinism(spec.seed, 1, "cpu")
