"""Faking a fraction f of the segments escapes m independent samples with probability (1-f)^m."""
from __future__ import annotations

import math

import pytest

from training.adversary import Fault, run_dishonest_unit
from training.determinism import set_determinism
from training.evidence import Claim
from training.outer import initial_global_blob
from training.replay import sample_segments, verify_unit


def test_sample_segments_is_a_pure_function_of_the_seed() -> None:
    a = sample_segments(b"seed", 10, 3)
    assert a == sample_segments(b"seed", 10, 3) and all(0 <= j < 10 for j in a) and 1 <= len(a) <= 3
    draws = [j for s in range(2000) for j in sample_segments(s.to_bytes(4, "little"), 10, 1)]
    counts = [draws.count(j) for j in range(10)]  # uniform: 200 each, 4 sigma ~ 54
    assert all(abs(c - 200) < 60 for c in counts), counts


@pytest.mark.parametrize(("faked", "m"), [(3, 2), (1, 4)])
def test_detection_rate_matches_one_minus_escape_probability(dataset, mkspec, faked: int, m: int) -> None:
    spec = mkspec(dataset, H=20, k=2, m=m)  # 10 segments of 2 steps
    set_determinism(spec.seed, spec.threads, spec.device)
    n = spec.num_segments
    f = faked / n
    g = initial_global_blob(spec)
    caught = trials = 0
    for cheater in range(4):  # four cheaters, each faking a different random set of segments
        res = run_dishonest_unit(Fault.FAKE_SEGMENTS, spec, dataset, 0, cheater % spec.units_per_round, g, None,
                                 fraction=f, seed=cheater)
        claim = Claim.of(res)
        for t in range(100):
            v = verify_unit(spec, dataset, claim, res.trace, res.snapshots, res.output_blob, g, None,
                            sample_seed=f"{cheater}/{t}".encode())
            trials += 1
            if not v.accepted:
                caught += 1
                assert v.evidence is not None and v.evidence.proofs_valid()
    p = 1 - (1 - f) ** m
    rate = caught / trials
    half_width = 3.29 * math.sqrt(p * (1 - p) / trials)  # 99.9% normal interval of a binomial rate
    print(f"f={f:.2f} m={m}: detected {rate:.3f} over {trials} trials, 1-(1-f)^m = {p:.3f} +- {half_width:.3f}")
    assert abs(rate - p) <= half_width
