"""Merkle trees that OpenZeppelin's `MerkleProof.verify` accepts (docs/protocol.md, "Merkle trees").

Leaves are double-hashed: leaf = keccak256(keccak256(abi.encode(fields...))), so a leaf
can never be confused with an inner node (64-byte preimage). Inner nodes hash the sorted
pair (OpenZeppelin's commutative keccak). Leaves keep the order they are given (units by
index, trace steps by step); on each level adjacent nodes pair up and an odd last node
moves up unchanged. The root of a single leaf is the leaf itself (empty proof).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eth_abi import encode as abi_encode

from protocol import ProtocolError
from protocol.hashing import keccak256


class MerkleError(ProtocolError, ValueError):
    """Empty tree, index out of range, or a malformed node."""


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak256(a + b) if a < b else keccak256(b + a)


def leaf_hash(types: Sequence[str], values: Sequence[object]) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(values...)))) as in OpenZeppelin's StandardMerkleTree."""
    return keccak256(keccak256(abi_encode(list(types), list(values))))


ROUND_LEAF_TYPES = ("uint256", "uint256", "uint256", "address", "uint256", "bytes32")
TRACE_LEAF_TYPES = ("uint256", "bytes32", "bytes32", "uint64")


def round_leaf(*, job_id: int, round: int, unit: int, worker: str, amount: int, result_hash: bytes) -> bytes:
    """Leaf of a round's settlement tree: (jobId, round, unit, worker, amount, resultHash)."""
    return leaf_hash(ROUND_LEAF_TYPES, (job_id, round, unit, worker, amount, result_hash))


def trace_leaf(*, step: int, batch_digest: bytes, state_digest: bytes, loss_bits: int) -> bytes:
    """Leaf of a unit's trace: (step, batchDigest, stateDigest, lossBits = float64 bit pattern)."""
    return leaf_hash(TRACE_LEAF_TYPES, (step, batch_digest, state_digest, loss_bits))


@dataclass(frozen=True)
class MerkleTree:
    """All levels of the tree, leaves first; `levels[-1][0]` is the root."""

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, leaves: Sequence[bytes]) -> "MerkleTree":
        if not leaves:
            raise MerkleError("a Merkle tree needs at least one leaf")
        for i, leaf in enumerate(leaves):
            if len(leaf) != 32:
                raise MerkleError(f"leaf {i} is {len(leaf)} bytes, expected 32")
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            cur = levels[-1]
            nxt = [hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            levels.append(tuple(nxt))
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < len(self):
            raise MerkleError(f"leaf index {index} out of range for a tree of {len(self)} leaves")
        out = []
        for level in self.levels[:-1]:
            sib = index ^ 1
            if sib < len(level):
                out.append(level[sib])
            index //= 2
        return out


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf
    for p in proof:
        node = hash_pair(node, p)
    return node


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Same answer as OpenZeppelin `MerkleProof.verify(proof, root, leaf)`."""
    return process_proof(leaf, proof) == root
