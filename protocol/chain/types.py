"""Python forms of the Market's structs (IMarket.RoundLeaf, TraceLeaf, Evidence) and enums.

Each knows its leaf hash (protocol.merkle, docs/protocol.md) and its ABI form, so callers
build a challenge from Python objects and never hand-assemble tuples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Sequence

from eth_utils import to_checksum_address

from protocol.eip712 import WorkResult
from protocol.merkle import round_leaf, trace_leaf


class Role(IntEnum):
    WORKER = 1
    VERIFIER = 2


class JobStatus(IntEnum):
    NONE = 0
    OPEN = 1
    COMPLETED = 2
    CLOSED = 3


class RoundStatus(IntEnum):
    NONE = 0
    COMMITTED = 1
    FINALIZED = 2


class LeafStatus(IntEnum):
    NONE = 0
    CHALLENGED = 1
    UPHELD = 2
    REVOKED = 3
    CLAIMED = 4


class DisputeStatus(IntEnum):
    NONE = 0
    OPEN = 1
    RULED = 2
    TIMED_OUT = 3


class Ruling(IntEnum):
    NO_DECISION = 0
    WORKER_RIGHT = 1
    CHALLENGER_RIGHT = 2


@dataclass(frozen=True, kw_only=True)
class RoundLeaf:
    """One unit's payout line in a round's settlement tree. `amount` in token base units."""

    job_id: int
    round: int
    unit: int
    worker: str
    amount: int
    result_hash: bytes  # the worker's EIP-712 WorkResult digest

    def hash(self) -> bytes:
        return round_leaf(job_id=self.job_id, round=self.round, unit=self.unit, worker=self.worker,
                          amount=self.amount, result_hash=self.result_hash)

    def to_abi(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "round": self.round, "unit": self.unit,
                "worker": to_checksum_address(self.worker), "amount": self.amount, "resultHash": self.result_hash}


@dataclass(frozen=True, kw_only=True)
class TraceLeaf:
    """One inner step of a unit's trace: state digest is of the state *after* the step."""

    step: int
    batch_digest: bytes
    state_digest: bytes
    loss_bits: int  # IEEE-754 float64 bit pattern of the step's loss

    def hash(self) -> bytes:
        return trace_leaf(step=self.step, batch_digest=self.batch_digest, state_digest=self.state_digest,
                          loss_bits=self.loss_bits)

    def to_abi(self) -> dict[str, Any]:
        return {"step": self.step, "batchDigest": self.batch_digest, "stateDigest": self.state_digest,
                "lossBits": self.loss_bits}


_ZERO_TRACE = TraceLeaf(step=0, batch_digest=b"\0" * 32, state_digest=b"\0" * 32, loss_bits=0)


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """A challenge of one round leaf at trace step `step` (IMarket.Evidence).

    `prev`/`prev_proof` are leaf `step-1` and its proof; leave them None for step 0 (the
    state before step 0 is `result.input_hash`).
    """

    leaf: RoundLeaf
    leaf_proof: Sequence[bytes]
    result: WorkResult
    signature: bytes
    step: int
    cur: TraceLeaf
    cur_proof: Sequence[bytes]
    prev: TraceLeaf | None = None
    prev_proof: Sequence[bytes] = field(default=())

    def to_abi(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf.to_abi(),
            "leafProof": list(self.leaf_proof),
            "inputHash": self.result.input_hash,
            "outputHash": self.result.output_hash,
            "traceRoot": self.result.trace_root,
            "signature": self.signature,
            "step": self.step,
            "prev": (self.prev or _ZERO_TRACE).to_abi(),
            "prevProof": list(self.prev_proof),
            "cur": self.cur.to_abi(),
            "curProof": list(self.cur_proof),
        }
