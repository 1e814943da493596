"""Replaying committed steps: segment sampling, `verify_unit` and the replay loop.

A verifier holds the round's input (G_r, slot state; from the coordinator) and the
worker's upload (trace, snapshots, output blob) plus the signed fields (`Claim`). It
samples m segments with randomness drawn after the commitment, replays each from its
snapshot with the same `Trainer.step` the worker ran, and stops at the first step that
does not match the committed leaf. A snapshot that is missing or does not match its
committed digest is not trusted: the replay falls back to the nearest earlier valid
snapshot (ultimately S_0, which the verifier builds itself), so withholding or altering
snapshots only makes the verifier replay more, never lets a fault through.

Call `set_determinism(spec.seed, threads, device)` first. Exact mode needs the spec's
thread count; tolerance mode accepts any (that is what it is for).
"""
from __future__ import annotations

import math
import struct
import time
from typing import Callable, Mapping

import torch

from protocol.hashing import sha256
from protocol.spec import JobSpec
from training import ReplayError, StateError
from training.data import Dataset
from training.evidence import Claim, Evidence, SegmentReport, Verdict
from training.state import PARAM, PGRAD, Tensors, from_blob, select, state_digest
from training.step import Trainer, lr_at
from training.trace import Trace, loss_to_bits
from training.unit import OUTPUT, STATE, BlobLike, as_tensors, batch_digest, batch_for, slot_of, start_state

SnapshotSource = Mapping[int, bytes] | Callable[[int], "bytes | None"]
SEGMENT_DOMAIN = b"crowdtrain/segments/v1"


def sample_segments(seed: bytes, num_segments: int, m: int) -> list[int]:
    """m independent uniform draws (with replacement) of a segment index, deduplicated, sorted.

    Draw j = u64_le(SHA-256(SEGMENT_DOMAIN || seed || u32_le(j))[0:8]) mod num_segments.
    Independent draws make the escape probability of a worker faking a fraction f of the
    segments exactly (1-f)^m. `seed` must be unknown to the worker until it has signed.
    """
    if num_segments < 1 or m < 1:
        raise ValueError("need at least one segment and one draw")
    return sorted({int.from_bytes(sha256(SEGMENT_DOMAIN + seed + struct.pack("<I", j))[:8], "little") % num_segments
                   for j in range(m)})


def state_distance(a: Tensors, b: Tensors) -> tuple[float, float]:
    """(max over tensors of relative L2 distance, max abs difference) between two states."""
    rel, mx = 0.0, 0.0
    for n, tb in b.items():
        if not tb.is_floating_point():
            if not torch.equal(a[n].cpu(), tb.cpu()):
                return math.inf, math.inf
            continue
        d = a[n].detach().double().cpu() - tb.double().cpu()
        rel = max(rel, float(d.norm() / max(float(tb.double().norm()), 1e-12)))
        mx = max(mx, float(d.abs().max()) if d.numel() else 0.0)
    return rel, mx


class Replayer:
    """Replays steps of one claimed unit; shared by `verify_unit`, jurors and calibration.

    `trace` may be None for callers that only replay raw steps (jurors, calibration); the
    snapshot and leaf-comparing methods need it.
    """

    def __init__(self, spec: JobSpec, dataset: Dataset, claim: Claim, trace: Trace | None,
                 snapshots: SnapshotSource, global_ckpt: BlobLike, slot_state: BlobLike | None,
                 *, device: str | None = None) -> None:
        self.spec, self.dataset, self.claim, self.trace = spec, dataset, claim, trace
        self.k = spec.verification.snapshot_interval
        self.tol = spec.verification.tolerance
        self._snapshots = snapshots
        self.s0 = start_state(spec, global_ckpt, slot_state)
        self.true_input = state_digest(self.s0)
        self.global_params = select(self.s0, PARAM)
        self.trainer = Trainer(spec, device=device)
        self.notes: list[str] = []

    # ---- snapshots -------------------------------------------------------------------
    def snapshot(self, s: int) -> dict[str, torch.Tensor] | None:
        """S_s if available and matching its committed digest; s = 0 is always the true S_0."""
        if s == 0:
            return self.s0
        src = self._snapshots
        blob = src(s) if callable(src) else src.get(s)
        if blob is None:
            self.notes.append(f"snapshot {s} missing")
            return None
        try:
            st = from_blob(blob, STATE)
        except StateError as e:
            self.notes.append(f"snapshot {s} unreadable: {e}")
            return None
        if self.trace is None or state_digest(st) != self.trace.state_before(s):
            self.notes.append(f"snapshot {s} does not match the committed digest of leaf {s - 1}")
            return None
        return st

    def anchor(self, s: int) -> tuple[int, dict[str, torch.Tensor]]:
        """The nearest valid start state at or before step s (a multiple of k)."""
        while s > 0:
            st = self.snapshot(s)
            if st is not None:
                return s, st
            s -= self.k
        return 0, self.s0

    # ---- replay ----------------------------------------------------------------------
    def replay(self, a: int, state: Tensors, end: int) -> tuple[int | None, str]:
        """Replay steps a..end-1 from `state` (= S_a); (first bad step, why) or (None, "")."""
        tr, trace, spec = self.trainer, self.trace, self.spec
        if trace is None:
            raise ReplayError("replay against leaves needs the trace")
        tr.load_state(state)
        for i in range(a, end):
            leaf = trace.leaves[i]
            tokens = batch_for(spec, self.dataset, self.claim.round, self.claim.unit, i)
            if batch_digest(tokens) != leaf.batch_digest:
                return i, f"step {i}: batch digest differs from the data of unit ({self.claim.round}, {self.claim.unit})"
            loss = tr.step(tokens, lr_at(spec, self.claim.round, i))
            if self.tol is None:
                if loss_to_bits(loss) != leaf.loss_bits:
                    return i, f"step {i}: loss {loss!r} != committed {leaf.loss!r}"
                if tr.digest() != leaf.state_digest:
                    return i, f"step {i}: state digest differs from the committed leaf"
                continue
            if abs(loss - leaf.loss) > self.tol.loss_rtol * max(abs(leaf.loss), 1e-6):
                return i, f"step {i}: loss {loss!r} vs committed {leaf.loss!r} beyond loss_rtol {self.tol.loss_rtol}"
            if (i + 1) % self.k == 0:
                ref = self.snapshot(i + 1)
                if ref is None:
                    continue  # cannot check the state here; carry on from the replayed state
                rel, mx = state_distance(tr.state(), ref)
                if rel > self.tol.state_rel_l2 or mx > self.tol.state_max_abs:
                    return i, (f"step {i}: state after the segment is {rel:.3g} rel-L2 / {mx:.3g} max-abs from the "
                               f"committed snapshot (tolerance {self.tol.state_rel_l2:g} / {self.tol.state_max_abs:g})")
                tr.load_state(ref)  # re-sync on the worker's committed state
        return None, ""

    def check_output(self, output_blob: bytes, final: Tensors) -> str:
        """'' if the output blob is G_r - theta_H plus the slot state of `final` (= S_H)."""
        try:
            out = from_blob(output_blob, OUTPUT)
        except StateError as e:
            return f"output blob unreadable: {e}"
        pg = select(out, PGRAD)
        if set(pg) != set(self.global_params):
            return "output blob's pseudo-gradient names do not match the model"
        for n, g in self.global_params.items():
            if not torch.equal(pg[n], g - final[PARAM + n].to("cpu")):
                return f"pseudo-gradient {n!r} != G_r - theta_H of the committed final state"
        want = slot_of(final)
        got = {n: t for n, t in out.items() if n.startswith("adam.")}
        if set(got) != set(want) or any(not torch.equal(got[n], want[n].to("cpu")) for n in want):
            return "output blob's optimizer state != the committed final state's"
        return ""


def commitment_problems(spec: JobSpec, claim: Claim, trace: Trace, output_blob: bytes) -> list[str]:
    """Do the uploaded trace and output blob match the signed fields? ([] when they do)."""
    problems = []
    if (trace.round, trace.unit) != (claim.round, claim.unit):
        problems.append(f"trace is for unit ({trace.round}, {trace.unit}), the claim for ({claim.round}, {claim.unit})")
    if len(trace.leaves) != spec.inner_steps:
        problems.append(f"trace has {len(trace.leaves)} leaves, the job has H = {spec.inner_steps} steps")
    elif trace.root != claim.trace_root:
        problems.append("trace does not hash to the signed traceRoot (changed after signing?)")
    if trace.input_hash != claim.input_hash:
        problems.append("trace's input hash differs from the signed inputHash")
    if sha256(output_blob) != claim.output_hash:
        problems.append("output blob does not hash to the signed outputHash (changed after signing?)")
    return problems


def check_upload(spec: JobSpec, claim: Claim, trace: Trace, snapshots: SnapshotSource,
                 output_blob: bytes) -> list[str]:
    """The coordinator's intake check, no training: `commitment_problems` plus every snapshot
    s = 0, k, ..., H present, readable and matching its committed digest. [] = accept upload.
    """
    problems = commitment_problems(spec, claim, trace, output_blob)
    if problems:
        return problems
    for s in range(0, spec.inner_steps + 1, spec.verification.snapshot_interval):
        blob = snapshots(s) if callable(snapshots) else snapshots.get(s)
        if blob is None:
            problems.append(f"snapshot {s} is missing")
            continue
        try:
            st = from_blob(blob, STATE)
        except StateError as e:
            problems.append(f"snapshot {s} is unreadable: {e}")
            continue
        if state_digest(st) != trace.state_before(s):
            problems.append(f"snapshot {s} does not match the committed digest "
                            f"({'inputHash' if s == 0 else f'leaf {s - 1}'})")
    try:
        from_blob(output_blob, OUTPUT)
    except StateError as e:
        problems.append(f"output blob: {e}")
    return problems


def verify_unit(spec: JobSpec, dataset: Dataset, claim: Claim, trace: Trace, snapshots: SnapshotSource,
                output_blob: bytes, global_ckpt: BlobLike, slot_state: BlobLike | None, *,
                sample_seed: bytes, segments: list[int] | None = None, device: str | None = None) -> Verdict:
    """Check a claimed unit: commitment consistency, input, m sampled segments, output.

    `sample_seed`: bytes unknown to the worker before it signed (e.g. the verifier's own
    randomness or a later block hash). `segments` overrides the sample (tests, audits).
    Returns a Verdict; `evidence` is set when a fault is provable against the signed root.
    """
    t0 = time.perf_counter()
    if spec.verification.mode == "exact" and torch.get_num_threads() != spec.threads:
        raise ReplayError(f"exact mode replays need torch threads = {spec.threads} (the spec's), this "
                          f"process has {torch.get_num_threads()}; call set_determinism(seed, {spec.threads}, device)")
    H, k = spec.inner_steps, spec.verification.snapshot_interval
    problems = commitment_problems(spec, claim, trace, output_blob)
    if problems:
        return Verdict(False, tuple(problems), None, seconds=time.perf_counter() - t0)

    rp = Replayer(spec, dataset, claim, trace, snapshots, global_ckpt, slot_state, device=device)
    sampled = tuple(segments if segments is not None else sample_segments(sample_seed, H // k, spec.verification.segments))
    reports: list[SegmentReport] = []

    def fault(kind, step, a, why) -> Verdict:
        ev = Evidence.build(kind, claim, trace, step, a, why)
        return Verdict(False, (why,), ev, tuple(reports), tuple(rp.notes), time.perf_counter() - t0, sampled)

    bad_input = rp.true_input != claim.input_hash
    if bad_input:  # segment 0 from the true S_0 pins the first step that differs
        sampled = tuple(sorted({0, *sampled}))
    for j in sampled:
        a, st = rp.anchor(j * k)
        bad, why = rp.replay(a, st, (j + 1) * k)
        reports.append(SegmentReport(j, j * k, a, bad is None, why))
        if bad is not None:
            kind = "input" if a == 0 and bad_input else "step"
            return fault(kind, bad, a, why if kind == "step" else f"signed inputHash is not the round's input; {why}")
    if bad_input:
        return fault("input", 0, 0, "signed inputHash is not the digest of the round's input state S_0")

    final = rp.snapshot(H)
    if final is None:
        if rp.tol is not None:
            return Verdict(False, ("final snapshot missing or not matching leaf H-1",), None, tuple(reports),
                           tuple(rp.notes), time.perf_counter() - t0, sampled)
        a, st = rp.anchor(H - k)
        bad, why = rp.replay(a, st, H)
        if bad is not None:
            return fault("step", bad, a, why)
        final = {n: t.detach().cpu().clone() for n, t in rp.trainer.state().items()}
    why = rp.check_output(output_blob, final)
    if why:
        return fault("output", H - 1, H - k, why)
    return Verdict(True, (), None, tuple(reports), tuple(rp.notes), time.perf_counter() - t0, sampled)
