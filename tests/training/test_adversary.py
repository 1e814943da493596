"""Every named fault is caught, with evidence that verifies against the signed trace root
and that a juror replaying the disputed step upholds."""
from __future__ import annotations

import dataclasses

import pytest

from protocol.merkle import verify
from training.adversary import Fault, run_dishonest_unit
from training.determinism import set_determinism
from training.evidence import Claim, Evidence
from training.job import run_job
from training.jury import CHALLENGER_RIGHT, WORKER_RIGHT, judge
from training.outer import slot_state_from_output
from training.replay import check_upload, verify_unit
from training.unit import run_unit

ROUND, UNIT = 1, 1


@pytest.fixture(scope="module")
def world(dataset, mkspec):
    """A tiny MLP job after one round: G_1, slot states, and this worker's round-0 result."""
    spec = mkspec(dataset, H=20, k=5)
    set_determinism(spec.seed, spec.threads, spec.device)
    run = run_job(spec, dataset, rounds=1, eval_batches=0)
    slots = {r.unit: slot_state_from_output(r.output_blob) for r in run.rounds[0].results}
    return spec, run.globals[1], slots, run.rounds[0].results[UNIT]


def _check_caught(spec, dataset, g, slot, res, *, segments=None):
    set_determinism(spec.seed, spec.threads, spec.device)
    claim = Claim.of(res)
    v = verify_unit(spec, dataset, claim, res.trace, res.snapshots, res.output_blob, g, slot,
                    sample_seed=b"after-commit", segments=segments or list(range(spec.num_segments)))
    assert not v.accepted, v
    ev = v.evidence
    assert ev is not None, v.reasons
    # the evidence stands on its own against the *signed* root
    assert ev.proofs_valid()
    assert verify(list(ev.proof), claim.trace_root, ev.leaf.hash())
    if ev.step > 0:
        assert verify(list(ev.prev_proof), claim.trace_root, ev.prev_leaf.hash())
    ev = Evidence.from_json(ev.to_json())
    assert ev == v.evidence
    # a juror, replaying from the anchor snapshot, rules for the challenger
    ruling = judge(spec, dataset, ev, global_ckpt=g, slot_state=slot,
                   anchor_snapshot=res.snapshots.get(ev.anchor_step) if ev.anchor_step else None,
                   output_blob=res.output_blob, final_snapshot=res.snapshots.get(spec.inner_steps))
    assert ruling.ruling == CHALLENGER_RIGHT, (ev.kind, ev.reason, ruling.reason)
    return v


@pytest.mark.parametrize("fault,kind", [
    (Fault.LAZY_INITIAL, "step"),
    (Fault.RANDOM_WEIGHTS, "step"),
    (Fault.SKIP_STEPS, "step"),
    (Fault.WRONG_DATA, "step"),
    (Fault.WRONG_SHARD, "step"),
    (Fault.CHANGED_LR, "step"),
    (Fault.CHANGED_PRECISION, "step"),
    (Fault.COPY_OTHER_UNIT, "step"),
    (Fault.INTERPOLATE, "step"),
    (Fault.FAKE_SEGMENTS, "step"),
    (Fault.TAMPER_SNAPSHOT, "step"),
    (Fault.POISON_OUTPUT, "output"),
])
def test_fault_is_caught_with_valid_evidence(world, dataset, fault: Fault, kind: str) -> None:
    spec, g, slots, _ = world
    res = run_dishonest_unit(fault, spec, dataset, ROUND, UNIT, g, slots[UNIT], seed=3)
    v = _check_caught(spec, dataset, g, slots[UNIT], res)
    assert v.evidence.kind == kind
    if fault is Fault.TAMPER_SNAPSHOT:
        assert any("does not match the committed digest" in n for n in v.notes)
        assert v.evidence.anchor_step < v.evidence.step  # replayed from an earlier, valid snapshot


def test_replayed_old_proof_is_caught_as_wrong_input(world, dataset) -> None:
    spec, g, slots, mine_round0 = world
    res = run_dishonest_unit(Fault.REPLAY_OLD_PROOF, spec, dataset, ROUND, UNIT, g, slots[UNIT], donor=mine_round0)
    v = _check_caught(spec, dataset, g, slots[UNIT], res, segments=[2])
    assert v.evidence.kind == "input" and v.evidence.step == 0


def test_copy_in_round_zero_is_caught_by_batch_digests(world, dataset) -> None:
    spec, _, _, _ = world
    from training.outer import initial_global_blob

    g0 = initial_global_blob(spec)
    res = run_dishonest_unit(Fault.COPY_OTHER_UNIT, spec, dataset, 0, 0, g0, None)
    v = _check_caught(spec, dataset, g0, None, res, segments=[1])
    assert "batch digest" in v.evidence.reason


def test_tampered_trace_is_rejected_at_intake(world, dataset) -> None:
    spec, g, slots, _ = world
    res = run_dishonest_unit(Fault.TAMPER_TRACE, spec, dataset, ROUND, UNIT, g, slots[UNIT])
    claim = Claim.of(res)
    problems = check_upload(spec, claim, res.trace, res.snapshots, res.output_blob)
    assert any("traceRoot" in p for p in problems)
    v = verify_unit(spec, dataset, claim, res.trace, res.snapshots, res.output_blob, g, slots[UNIT],
                    sample_seed=b"x")
    assert not v.accepted and v.evidence is None and "traceRoot" in " ".join(v.reasons)


def test_tampered_snapshot_is_rejected_at_intake(world, dataset) -> None:
    spec, g, slots, _ = world
    res = run_dishonest_unit(Fault.TAMPER_SNAPSHOT, spec, dataset, ROUND, UNIT, g, slots[UNIT], seed=3)
    problems = check_upload(spec, Claim.of(res), res.trace, res.snapshots, res.output_blob)
    assert any("snapshot" in p for p in problems)


def test_juror_upholds_honest_leaves(world, dataset) -> None:
    """A challenge against an honest unit loses, whatever step it names."""
    spec, g, slots, _ = world
    set_determinism(spec.seed, spec.threads, spec.device)
    res = run_unit(spec, dataset, ROUND, UNIT, g, slots[UNIT])
    assert check_upload(spec, Claim.of(res), res.trace, res.snapshots, res.output_blob) == []
    k = spec.verification.snapshot_interval
    for step in (0, 3, 7, spec.inner_steps - 1):
        anchor = (step // k) * k
        ev = Evidence.build("step", Claim.of(res), res.trace, step, anchor, "bogus challenge")
        r = judge(spec, dataset, ev, global_ckpt=g, slot_state=slots[UNIT],
                  anchor_snapshot=res.snapshots.get(anchor))
        assert r.ruling == WORKER_RIGHT, r.reason
    ev = Evidence.build("output", Claim.of(res), res.trace, spec.inner_steps - 1, spec.inner_steps - k, "bogus")
    r = judge(spec, dataset, ev, global_ckpt=g, slot_state=slots[UNIT], output_blob=res.output_blob,
              final_snapshot=res.snapshots[spec.inner_steps])
    assert r.ruling == WORKER_RIGHT
    ev = Evidence.build("input", Claim.of(res), res.trace, 0, 0, "bogus")
    assert judge(spec, dataset, ev, global_ckpt=g, slot_state=slots[UNIT]).ruling == WORKER_RIGHT


def test_juror_rejects_evidence_not_matching_the_signed_root(world, dataset) -> None:
    spec, g, slots, _ = world
    res = run_dishonest_unit(Fault.SKIP_STEPS, spec, dataset, ROUND, UNIT, g, slots[UNIT])
    ev = Evidence.build("step", Claim.of(res), res.trace, 1, 0, "x")
    forged = dataclasses.replace(ev, claim=Claim(ROUND, UNIT, res.input_hash, res.output_hash, b"\x01" * 32))
    assert not forged.proofs_valid()
    assert judge(spec, dataset, forged, global_ckpt=g, slot_state=slots[UNIT]).ruling == WORKER_RIGHT
    assert judge(spec, dataset, ev, global_ckpt=g, slot_state=slots[UNIT]).ruling == CHALLENGER_RIGHT
