"""Challenge evidence and verdicts (what a verifier hands to the chain client and jurors).

Evidence names one disputed step i of a signed unit result and carries the committed
leaves i-1 (absent for i = 0) and i with Merkle proofs against the signed trace root,
plus an *anchor*: the committed digest the juror's replay starts from (leaf s-1 with its
proof, or the inputHash when s = 0), s being the snapshot step at or before i.

kinds:
  step    replaying step i from the committed state S_i (= leaf i-1's stateDigest) does not
          give leaf i (batch digest, state digest / loss bits in exact mode; batch digest,
          loss or end-of-segment state beyond tolerance in tolerance mode)
  input   the signed inputHash is not the digest of the round's input S_0 (G_r + slot state);
          i = 0, replayed from the true S_0
  output  the output blob (outputHash) is not G_r - theta_H plus the slot state of the state
          committed in leaf H-1; i = H-1
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from protocol.hashing import from_hex, to_hex
from training.trace import Trace, TraceLeaf, verify_leaf

Kind = Literal["step", "input", "output"]


@dataclass(frozen=True)
class Claim:
    """The signed WorkResult fields (EIP-712), minus the job id the caller knows."""

    round: int
    unit: int
    input_hash: bytes
    output_hash: bytes
    trace_root: bytes

    @classmethod
    def of(cls, result) -> "Claim":
        """From a `UnitResult` (or anything with the same attributes)."""
        return cls(result.round, result.unit, result.input_hash, result.output_hash, result.trace_root)


@dataclass(frozen=True)
class Evidence:
    kind: Kind
    claim: Claim
    step: int                            # disputed step i
    leaf: TraceLeaf                      # committed leaf i
    proof: tuple[bytes, ...]
    prev_leaf: TraceLeaf | None          # committed leaf i-1 (None when i = 0)
    prev_proof: tuple[bytes, ...]
    anchor_step: int                     # s: the juror replays from S_s (s <= i)
    anchor_leaf: TraceLeaf | None        # leaf s-1 (None when s = 0: anchor is inputHash)
    anchor_proof: tuple[bytes, ...]
    reason: str

    @classmethod
    def build(cls, kind: Kind, claim: Claim, trace: Trace, step: int, anchor_step: int, reason: str) -> "Evidence":
        if not 0 <= anchor_step <= step < len(trace.leaves):
            raise ValueError(f"evidence step {step} / anchor {anchor_step} out of range")
        prev = trace.leaves[step - 1] if step > 0 else None
        anchor = trace.leaves[anchor_step - 1] if anchor_step > 0 else None
        return cls(kind, claim, step, trace.leaves[step], tuple(trace.proof(step)), prev,
                   tuple(trace.proof(step - 1)) if step > 0 else (), anchor_step, anchor,
                   tuple(trace.proof(anchor_step - 1)) if anchor_step > 0 else (), reason)

    def proofs_valid(self) -> bool:
        """Every carried leaf verifies against the signed trace root."""
        root = self.claim.trace_root
        ok = verify_leaf(self.leaf, list(self.proof), root) and self.leaf.step == self.step
        if self.step > 0:
            ok = ok and self.prev_leaf is not None and self.prev_leaf.step == self.step - 1 \
                and verify_leaf(self.prev_leaf, list(self.prev_proof), root)
        if self.anchor_step > 0:
            ok = ok and self.anchor_leaf is not None and self.anchor_leaf.step == self.anchor_step - 1 \
                and verify_leaf(self.anchor_leaf, list(self.anchor_proof), root)
        return ok

    @property
    def anchor_digest(self) -> bytes:
        return self.claim.input_hash if self.anchor_step == 0 else self.anchor_leaf.state_digest  # type: ignore[union-attr]

    def to_json(self) -> bytes:
        c = self.claim
        def lf(x: TraceLeaf | None):  # noqa: E306
            return None if x is None else x.to_json()
        return json.dumps({
            "format": "crowdtrain-evidence/1", "kind": self.kind, "reason": self.reason,
            "claim": {"round": c.round, "unit": c.unit, "input_hash": to_hex(c.input_hash),
                      "output_hash": to_hex(c.output_hash), "trace_root": to_hex(c.trace_root)},
            "step": self.step, "leaf": lf(self.leaf), "proof": [to_hex(p) for p in self.proof],
            "prev_leaf": lf(self.prev_leaf), "prev_proof": [to_hex(p) for p in self.prev_proof],
            "anchor_step": self.anchor_step, "anchor_leaf": lf(self.anchor_leaf),
            "anchor_proof": [to_hex(p) for p in self.anchor_proof],
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "Evidence":
        d = json.loads(data)
        c = d["claim"]
        def lf(x):  # noqa: E306
            return None if x is None else TraceLeaf.from_json(x)
        hx = lambda xs: tuple(from_hex(p) for p in xs)  # noqa: E731
        return cls(d["kind"], Claim(int(c["round"]), int(c["unit"]), from_hex(c["input_hash"]),
                                    from_hex(c["output_hash"]), from_hex(c["trace_root"])),
                   int(d["step"]), lf(d["leaf"]), hx(d["proof"]), lf(d["prev_leaf"]), hx(d["prev_proof"]),
                   int(d["anchor_step"]), lf(d["anchor_leaf"]), hx(d["anchor_proof"]), d["reason"])


@dataclass(frozen=True)
class SegmentReport:
    index: int               # segment j covers steps [j*k, (j+1)*k)
    start: int
    replayed_from: int       # earlier than start when snapshot `start` was missing/bad
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """accepted: no fault found. evidence: the challenge to file when a fault is provable
    on chain; None with accepted=False means the upload contradicts its own signature
    (reject at intake; nothing signed to challenge)."""

    accepted: bool
    reasons: tuple[str, ...]
    evidence: Evidence | None
    segments: tuple[SegmentReport, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    sampled: tuple[int, ...] = field(default=())
