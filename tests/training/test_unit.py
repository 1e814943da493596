"""Honest units: trace/snapshots/output layout, exact reproducibility across processes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from protocol.hashing import sha256
from protocol.merkle import MerkleTree
from training.determinism import set_determinism
from training.evidence import Claim
from training.outer import initial_global_blob
from training.replay import verify_unit
from training.state import PARAM, PGRAD, from_blob, select, state_digest
from training.trace import Trace, bits_to_loss
from training.unit import expected_input_hash, run_unit


def test_unit_result_layout(spec, dataset) -> None:
    g = initial_global_blob(spec)
    seen = []
    res = run_unit(spec, dataset, 0, 1, g, progress=lambda i, n, loss: seen.append((i, n)))
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    assert seen[-1] == (H, H) and len(seen) == H
    assert sorted(res.snapshots) == list(range(0, H + 1, k))
    assert res.input_hash == expected_input_hash(spec, g, None) == res.trace.input_hash
    assert res.output_hash == sha256(res.output_blob)
    assert res.trace_root == MerkleTree.build([leaf.hash() for leaf in res.trace.leaves]).root
    for s, blob in res.snapshots.items():  # snapshot s is the state committed in leaf s-1
        assert state_digest(from_blob(blob, "crowdtrain/state")) == res.trace.state_before(s)
    final = from_blob(res.snapshots[H], "crowdtrain/state")
    out = from_blob(res.output_blob, "crowdtrain/output")
    g_params = select(from_blob(g), PARAM)
    for n, p in g_params.items():
        assert torch.equal(out[PGRAD + n], p - final[PARAM + n])
    assert int(out["adam.step"]) == H
    assert [bits_to_loss(x.loss_bits) for x in res.trace.leaves] == res.losses
    assert res.losses[-1] < res.losses[0]  # it learns
    back = Trace.from_json(res.trace_json())
    assert back == res.trace and back.root == res.trace_root
    assert json.loads(res.trace_json())["leaves"][0]["loss_bits"].startswith("0x")


def test_honest_unit_passes_full_verification(spec, dataset) -> None:
    g = initial_global_blob(spec)
    res = run_unit(spec, dataset, 0, 0, g)
    v = verify_unit(spec, dataset, Claim.of(res), res.trace, res.snapshots, res.output_blob, g, None,
                    sample_seed=b"", segments=list(range(spec.num_segments)))
    assert v.accepted and v.evidence is None and not v.notes, v
    assert len(v.segments) == spec.num_segments and all(s.ok for s in v.segments)


SCRIPT = """
import sys
from pathlib import Path
from protocol.spec import spec_from_json
from training.data import load_dataset
from training.determinism import set_determinism
from training.outer import initial_global_blob
from training.unit import run_unit
spec = spec_from_json(Path(sys.argv[1]).read_bytes())
set_determinism(spec.seed, spec.threads, spec.device)
ds = load_dataset(sys.argv[2], spec.dataset)
res = run_unit(spec, ds, 0, 1, initial_global_blob(spec))
print(res.trace_root.hex(), res.output_hash.hex(), res.input_hash.hex())
"""


def test_exact_mode_is_bit_for_bit_across_processes(dataset, dataset_dir: Path, mkspec, tmp_path: Path) -> None:
    for model, threads in (("mlp", 1), ("gpt", 2)):
        spec = mkspec(dataset, model=model, threads=threads, H=10)
        f = tmp_path / f"{model}.json"
        f.write_bytes(spec.canonical_bytes())
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(f), str(dataset_dir)], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parents[2]).stdout.split()
        set_determinism(spec.seed, spec.threads, spec.device)
        res = run_unit(spec, dataset, 0, 1, initial_global_blob(spec))
        assert out == [res.trace_root.hex(), res.output_hash.hex(), res.input_hash.hex()], model


@pytest.mark.slow
def test_demo_gpt_unit_records_and_verifies(dataset) -> None:
    """The demo's GPT (examples/demo.toml) on the test data, H shortened to 20."""
    from protocol.spec import load_spec, spec_from_dict
    from training.state import state_digest as digest

    demo = load_spec(Path(__file__).parents[2] / "examples" / "demo.toml")
    spec = spec_from_dict({**demo.model_dump(mode="json"), "dataset": "0x" + dataset.hash.hex(),
                           "inner_steps": 20})
    set_determinism(spec.seed, spec.threads, spec.device)
    g = initial_global_blob(spec)
    res = run_unit(spec, dataset, 0, 0, g)
    t = res.timing
    print(f"demo GPT, 20 steps: {t['total']:.2f} s, recording {t['record'] / t['total']:.1%}")
    assert res.losses[-1] < res.losses[0]
    assert digest(from_blob(res.snapshots[20])) == res.trace.leaves[-1].state_digest
    v = verify_unit(spec, dataset, Claim.of(res), res.trace, res.snapshots, res.output_blob, g, None,
                    sample_seed=b"demo")
    assert v.accepted and len(v.segments) >= 1, v.reasons
