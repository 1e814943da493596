"""The juror's check: is the disputed leaf i of a signed trace right?

A juror gets the `Evidence` (from the challenge), the round's input (G_r, slot state; the
coordinator's content-addressed blobs) and the worker's snapshot at the evidence's anchor
step s (digest = leaf s-1, carried with its proof), plus for `output` disputes the output
blob and the final snapshot. It replays S_s -> S_i, checks that it reaches the committed
leaf i-1 (exact mode; otherwise the challenger did not name the first wrong step and the
evidence is insufficient), replays step i and compares with leaf i.

Rulings follow ERC-792 numbering: 1 = worker was right, 2 = challenger was right.
"""
from __future__ import annotations

from dataclasses import dataclass

from protocol.hashing import sha256
from protocol.spec import JobSpec
from training import StateError
from training.data import Dataset
from training.evidence import Evidence
from training.replay import Replayer, state_distance
from training.state import from_blob, state_digest
from training.step import lr_at
from training.trace import loss_to_bits
from training.unit import STATE, BlobLike, batch_digest, batch_for

WORKER_RIGHT, CHALLENGER_RIGHT = 1, 2


@dataclass(frozen=True)
class Ruling:
    ruling: int      # WORKER_RIGHT or CHALLENGER_RIGHT
    reason: str

    @property
    def challenger_wins(self) -> bool:
        return self.ruling == CHALLENGER_RIGHT


def judge(spec: JobSpec, dataset: Dataset, evidence: Evidence, *, global_ckpt: BlobLike,
          slot_state: BlobLike | None, anchor_snapshot: bytes | None = None,
          output_blob: bytes | None = None, final_snapshot: bytes | None = None,
          next_snapshot: bytes | None = None, device: str | None = None) -> Ruling:
    """Rule on `evidence`. Call `set_determinism(spec.seed, spec.threads, ...)` first.

    anchor_snapshot: S_s for s = evidence.anchor_step > 0 (ignored when s = 0: S_0 is built
    from the round's input). final_snapshot + output_blob: for `output` disputes.
    next_snapshot: tolerance mode, S_{i+1} when i ends a segment.
    """
    ev, c = evidence, evidence.claim
    if not 0 <= ev.anchor_step <= ev.step < spec.inner_steps or ev.anchor_step % spec.verification.snapshot_interval:
        return Ruling(WORKER_RIGHT, f"malformed evidence: step {ev.step}, anchor {ev.anchor_step}")
    if not ev.proofs_valid():
        return Ruling(WORKER_RIGHT, "the evidence's leaves do not verify against the signed trace root")
    rp = Replayer(spec, dataset, c, None, {}, global_ckpt, slot_state, device=device)
    if rp.true_input != c.input_hash:
        return Ruling(CHALLENGER_RIGHT, "the signed inputHash is not the digest of the round's input state")
    if ev.kind == "input":
        return Ruling(WORKER_RIGHT, "the signed inputHash is the round's input")

    if ev.kind == "output":
        if output_blob is None or sha256(output_blob) != c.output_hash:
            return Ruling(WORKER_RIGHT, "no output blob matching the signed outputHash was provided")
        if final_snapshot is None:
            return Ruling(WORKER_RIGHT, "no final snapshot was provided")
        try:
            final = from_blob(final_snapshot, STATE)
        except StateError as e:
            return Ruling(WORKER_RIGHT, f"final snapshot unreadable: {e}")
        if ev.step != spec.inner_steps - 1 or state_digest(final) != ev.leaf.state_digest:
            return Ruling(WORKER_RIGHT, "the final snapshot does not match the committed last leaf")
        why = rp.check_output(output_blob, final)
        return Ruling(CHALLENGER_RIGHT, why) if why else Ruling(WORKER_RIGHT, "output is consistent")

    # kind == "step": reach S_i from the anchor, then replay step i
    if ev.anchor_step == 0:
        state = rp.s0
    else:
        if anchor_snapshot is None:
            return Ruling(WORKER_RIGHT, "no snapshot at the anchor step was provided")
        try:
            state = from_blob(anchor_snapshot, STATE)
        except StateError as e:
            return Ruling(WORKER_RIGHT, f"anchor snapshot unreadable: {e}")
        if state_digest(state) != ev.anchor_digest:
            return Ruling(WORKER_RIGHT, "the anchor snapshot does not match the committed anchor digest")
    tr = rp.trainer
    tr.load_state(state)
    for i in range(ev.anchor_step, ev.step):
        tr.step(batch_for(spec, dataset, c.round, c.unit, i), lr_at(spec, c.round, i))
    exact = spec.verification.tolerance is None
    if exact and ev.step > 0 and tr.digest() != ev.prev_leaf.state_digest:  # type: ignore[union-attr]
        return Ruling(WORKER_RIGHT, f"replay from the anchor does not reach leaf {ev.step - 1}: "
                                    "the disputed step is not the first wrong one")
    i, leaf = ev.step, ev.leaf
    tokens = batch_for(spec, dataset, c.round, c.unit, i)
    if batch_digest(tokens) != leaf.batch_digest:
        return Ruling(CHALLENGER_RIGHT, f"leaf {i}'s batch digest is not unit ({c.round}, {c.unit})'s batch {i}")
    loss = tr.step(tokens, lr_at(spec, c.round, i))
    if exact:
        if loss_to_bits(loss) != leaf.loss_bits or tr.digest() != leaf.state_digest:
            return Ruling(CHALLENGER_RIGHT, f"replaying step {i} does not give leaf {i}")
        return Ruling(WORKER_RIGHT, f"replaying step {i} gives leaf {i} bit for bit")
    tol = spec.verification.tolerance
    if abs(loss - leaf.loss) > tol.loss_rtol * max(abs(leaf.loss), 1e-6):  # type: ignore[union-attr]
        return Ruling(CHALLENGER_RIGHT, f"step {i}'s loss is beyond tolerance")
    if (i + 1) % spec.verification.snapshot_interval == 0 and next_snapshot is not None:
        ref = from_blob(next_snapshot, STATE)
        if state_digest(ref) == leaf.state_digest:
            rel, mx = state_distance(tr.state(), ref)
            if rel > tol.state_rel_l2 or mx > tol.state_max_abs:  # type: ignore[union-attr]
                return Ruling(CHALLENGER_RIGHT, f"state after step {i} is beyond tolerance")
    return Ruling(WORKER_RIGHT, f"step {i} is within tolerance")
