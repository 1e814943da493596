"""The outer step matches torch's Nesterov SGD, is order-independent, averages units present."""
from __future__ import annotations

import math

import pytest
import torch

from training import StateError
from training.determinism import set_determinism
from training.job import run_job
from training.outer import initial_global, outer_step
from training.state import MOMENTUM, PARAM, PGRAD, from_blob, prefixed, select, to_blob


def _outputs(params: dict, seeds: list[int]) -> list[tuple[int, bytes]]:
    out = []
    for u in seeds:
        gen = torch.Generator().manual_seed(u)
        pg = {n: torch.randn(p.shape, generator=gen) * 0.01 for n, p in params.items()}
        out.append((u, to_blob({**prefixed(pg, PGRAD), "adam.step": torch.tensor(5)}, "crowdtrain/output")))
    return out


def test_matches_torch_sgd_nesterov_over_rounds(spec) -> None:
    g = to_blob(initial_global(spec), "crowdtrain/global")
    params = select(from_blob(g), PARAM)
    ref = {n: torch.nn.Parameter(p.clone()) for n, p in params.items()}
    opt = torch.optim.SGD(list(ref.values()), lr=0.7, momentum=0.9, nesterov=True)
    mom = None
    for r in range(3):
        outs = _outputs(params, [10 * r + u for u in range(3)])
        res = outer_step(spec, g, outs, mom)
        assert res.units == (0 + 10 * r, 1 + 10 * r, 2 + 10 * r)
        # reference: grad = mean pseudo-gradient, summed in unit order
        for n, p in ref.items():
            total = torch.zeros_like(p)
            for _, blob in outs:
                total += from_blob(blob)[PGRAD + n]
            p.grad = total / 3
        opt.step()
        g, mom = res.global_blob, res.momentum_blob
        got = select(from_blob(g), PARAM)
        for n, p in ref.items():
            assert torch.allclose(got[n], p.detach(), rtol=0, atol=1e-6), n
        assert set(select(from_blob(mom), MOMENTUM)) == set(params)


def test_order_independent_and_missing_units(spec) -> None:
    g = to_blob(initial_global(spec), "crowdtrain/global")
    params = select(from_blob(g), PARAM)
    outs = _outputs(params, [0, 1, 2])
    a = outer_step(spec, g, outs)
    b = outer_step(spec, g, list(reversed(outs)))
    assert a.global_blob == b.global_blob and a.global_hash == b.global_hash
    two = outer_step(spec, g, outs[:1] + outs[2:])  # unit 1 missing: mean of units 0 and 2
    assert two.units == (0, 2)
    delta = {n: (from_blob(outs[0][1])[PGRAD + n] + from_blob(outs[2][1])[PGRAD + n]) / 2 for n in params}
    got = select(from_blob(two.global_blob), PARAM)
    for n in params:  # first outer step: buf = delta, update = delta + 0.9 * delta
        assert torch.allclose(got[n], params[n] - 0.7 * (delta[n] + 0.9 * delta[n]), atol=1e-7)
    none = outer_step(spec, g, [])
    assert none.global_blob == g and none.units == ()


def test_rejects_bad_pseudo_gradients(spec) -> None:
    g = to_blob(initial_global(spec), "crowdtrain/global")
    params = select(from_blob(g), PARAM)
    outs = _outputs(params, [0, 1])
    with pytest.raises(StateError, match="duplicate"):
        outer_step(spec, g, [outs[0], (0, outs[1][1])])
    n0 = sorted(params)[0]
    bad = {**from_blob(outs[1][1])}
    bad[PGRAD + n0] = bad[PGRAD + n0].clone().fill_(math.nan)
    with pytest.raises(StateError, match="non-finite"):
        outer_step(spec, g, [outs[0], (1, to_blob(bad, "crowdtrain/output"))])
    del bad[PGRAD + n0]
    with pytest.raises(StateError, match="missing"):
        outer_step(spec, g, [(1, to_blob(bad, "crowdtrain/output"))])


def test_diloco_job_learns_and_survives_missing_units(dataset, mkspec) -> None:
    spec = mkspec(dataset, H=20, k=5, K=3, R=3)
    set_determinism(spec.seed, spec.threads, spec.device)
    run = run_job(spec, dataset, eval_batches=2)
    losses = [run.initial_eval_loss] + [r.eval_loss for r in run.rounds]
    assert losses[-1] < losses[0] - 0.5, losses
    again = run_job(spec, dataset, eval_batches=0)
    assert again.final_global == run.final_global  # the whole job is reproducible
    churn = run_job(spec, dataset, eval_batches=2, skip=lambda r, k: (r + k) % 3 == 0)
    assert [len(r.results) for r in churn.rounds] == [2, 2, 2]
    assert churn.rounds[-1].eval_loss < churn.initial_eval_loss - 0.5
