"""CUDA paths (run on a machine with a GPU: `pytest -m gpu tests/training`; CI deselects them)."""
from __future__ import annotations

import pytest
import torch

from protocol.spec import spec_from_dict
from training.calibrate import calibrate
from training.determinism import set_determinism
from training.evidence import Claim
from training.outer import initial_global_blob
from training.replay import verify_unit
from training.unit import run_unit

pytestmark = pytest.mark.gpu


def _cuda(spec, **kw):
    return spec_from_dict({**spec.model_dump(mode="json"), "device": "cuda", **kw})


@pytest.mark.parametrize("model", ["mlp", "gpt"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_unit_is_exact_and_verifies(dataset, mkspec, model: str, precision: str) -> None:
    spec = _cuda(mkspec(dataset, model=model, H=10, k=5), precision=precision)
    set_determinism(spec.seed, spec.threads, "cuda")
    g = initial_global_blob(spec)
    a = run_unit(spec, dataset, 0, 0, g)
    b = run_unit(spec, dataset, 0, 0, g)
    assert a.trace_root == b.trace_root and a.output_hash == b.output_hash
    v = verify_unit(spec, dataset, Claim.of(a), a.trace, a.snapshots, a.output_blob, g, None,
                    sample_seed=b"", segments=[0, 1])
    assert v.accepted, v.reasons
    assert torch.cuda.is_available()


def test_calibrate_across_cpu_and_cuda(dataset, mkspec) -> None:
    spec = mkspec(dataset, model="gpt", H=10, k=5)
    set_determinism(spec.seed, spec.threads, "cpu")
    cal = calibrate(spec, dataset, thread_counts=(1,), devices=("cpu", "cuda"), units=1)
    assert "cuda x1" in cal.honest
    t = cal.recommended()
    print("cpu vs cuda drift:", cal.honest, "recommended:", t)
    assert cal.dishonest.state_rel_l2 > t.state_rel_l2
