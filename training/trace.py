"""A unit's trace: one leaf per inner step, its Merkle tree and its JSON form.

Leaf i (docs/protocol.md, "Trace leaf"): step i, digest of batch i, digest of the state
S_{i+1} after the step, and the loss as float64 bits. JSON form (what the worker uploads):

    {"format": "crowdtrain-trace/1", "round": r, "unit": k, "input_hash": "0x..",
     "leaves": [{"step": 0, "batch_digest": "0x..", "state_digest": "0x..",
                 "loss_bits": "0x3ff0000000000000", "loss": 1.0}, ...]}

`loss_bits` is a 0x-prefixed 16-hex-digit string (JSON numbers lose bits past 2^53);
`loss` is informational and ignored when reading.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import cached_property

from protocol.hashing import from_hex, to_hex
from protocol.merkle import MerkleTree, trace_leaf, verify
from training import TrainingError

FORMAT = "crowdtrain-trace/1"


class TraceError(TrainingError, ValueError):
    """A trace is malformed (wrong format, steps out of order, bad digests)."""


def loss_to_bits(loss: float) -> int:
    """IEEE-754 float64 bit pattern of `loss` (a float32 value widened exactly)."""
    return struct.unpack("<Q", struct.pack("<d", loss))[0]


def bits_to_loss(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


@dataclass(frozen=True)
class TraceLeaf:
    step: int
    batch_digest: bytes
    state_digest: bytes
    loss_bits: int

    @property
    def loss(self) -> float:
        return bits_to_loss(self.loss_bits)

    def hash(self) -> bytes:
        """The Merkle leaf (keccak256(keccak256(abi.encode(...))))."""
        return trace_leaf(step=self.step, batch_digest=self.batch_digest,
                          state_digest=self.state_digest, loss_bits=self.loss_bits)

    def to_json(self) -> dict:
        return {"step": self.step, "batch_digest": to_hex(self.batch_digest),
                "state_digest": to_hex(self.state_digest), "loss_bits": f"0x{self.loss_bits:016x}",
                "loss": self.loss}

    @classmethod
    def from_json(cls, d: dict) -> "TraceLeaf":
        try:
            bits = int(d["loss_bits"], 16)
            if not 0 <= bits < 1 << 64:
                raise ValueError("loss_bits out of uint64 range")
            return cls(int(d["step"]), from_hex(d["batch_digest"]), from_hex(d["state_digest"]), bits)
        except (KeyError, TypeError, ValueError) as e:
            raise TraceError(f"malformed trace leaf {str(d)[:120]}: {e}") from None


@dataclass(frozen=True)
class Trace:
    round: int
    unit: int
    input_hash: bytes
    leaves: tuple[TraceLeaf, ...]

    def __post_init__(self) -> None:
        for i, leaf in enumerate(self.leaves):
            if leaf.step != i:
                raise TraceError(f"trace leaf {i} has step {leaf.step}; leaves must be steps 0..H-1 in order")

    @cached_property
    def tree(self) -> MerkleTree:
        if not self.leaves:
            raise TraceError("a trace needs at least one leaf")
        return MerkleTree.build([leaf.hash() for leaf in self.leaves])

    @property
    def root(self) -> bytes:
        return self.tree.root

    def proof(self, step: int) -> list[bytes]:
        return self.tree.proof(step)

    def state_before(self, step: int) -> bytes:
        """Committed digest of S_step: inputHash for step 0, else leaf step-1's stateDigest."""
        return self.input_hash if step == 0 else self.leaves[step - 1].state_digest

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "round": self.round, "unit": self.unit,
                           "input_hash": to_hex(self.input_hash),
                           "leaves": [leaf.to_json() for leaf in self.leaves]},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "Trace":
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise TraceError(f"unknown trace format {d.get('format')!r}, expected {FORMAT!r}")
            return cls(int(d["round"]), int(d["unit"]), from_hex(d["input_hash"]),
                       tuple(TraceLeaf.from_json(x) for x in d["leaves"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise TraceError(f"malformed trace JSON: {e}") from None


def verify_leaf(leaf: TraceLeaf, proof: list[bytes], root: bytes) -> bool:
    """True iff `leaf` sits in the tree with `root` (OpenZeppelin MerkleProof.verify)."""
    return verify(proof, root, leaf.hash())
