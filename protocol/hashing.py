"""Digests used across the protocol (docs/protocol.md, "Hashes").

Two hash functions, each for one job:
- SHA-256 for content (blobs, training states, batches, specs): hashlib's is SHA-NI
  accelerated (~2 GB/s here), which keeps per-step state digests cheap.
- keccak256 for anything the EVM recomputes (Merkle leaves and nodes, EIP-712).
All digests are 32 bytes; text form is 0x-prefixed lowercase hex.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

from eth_hash.auto import keccak as _keccak

from protocol import ProtocolError


class HashFormatError(ProtocolError, ValueError):
    """A digest was not 32 bytes / 64 hex characters."""


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_chunks(chunks: Iterable[bytes | bytearray | memoryview]) -> bytes:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.digest()


def keccak256(data: bytes | bytearray | memoryview) -> bytes:
    return _keccak(bytes(data))


def to_hex(digest: bytes) -> str:
    if len(digest) != 32:
        raise HashFormatError(f"expected a 32-byte digest, got {len(digest)} bytes")
    return "0x" + digest.hex()


def from_hex(text: str) -> bytes:
    """Parse a 0x-prefixed (or bare) 64-hex-digit digest."""
    s = text[2:] if text.startswith(("0x", "0X")) else text
    if len(s) != 64:
        raise HashFormatError(f"expected 64 hex digits for a digest, got {len(s)}: {text[:80]!r}")
    try:
        return bytes.fromhex(s)
    except ValueError as e:
        raise HashFormatError(f"not a hex digest: {text[:80]!r}") from e
