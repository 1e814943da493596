"""Training state, its canonical bytes and digest, and the safetensors blob layouts.

A training state is a flat mapping of names to tensors (docs/protocol.md, "Canonical
state"):

    param/<p>            model parameter p (fp32), p = torch `named_parameters()` name
    adam.exp_avg/<p>     AdamW first moment of p (fp32)
    adam.exp_avg_sq/<p>  AdamW second moment of p (fp32)
    adam.step            AdamW step count (int64, shape [])

Canonical bytes (entries in ascending order of their UTF-8 name bytes):
    DOMAIN | u32 LE n | n headers | n data sections (same order)
    header = u16 LE len(name) | name UTF-8 | u8 dtype code | u8 ndim | ndim x u64 LE dims
    data   = the tensor's elements, C order, little-endian (dtype codes: `DTYPE_CODES`)
Headers come first and data last so a state kept in flat per-group buffers (the Trainer
keeps param/*, adam.exp_avg/*, adam.exp_avg_sq/* each in one buffer, in this order) hashes
as a few large buffers. The digest is BLAKE3-256 of the stream: ~9 GB/s single-threaded
here vs ~1.9 GB/s for SHA-NI SHA-256, which keeps the per-step digest of the full state to
a few percent of a step for the demo GPT. Tensor memory is fed to the hasher without
copying (CPU, contiguous); CUDA tensors are copied to the host first.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Mapping

import blake3
import torch
from safetensors.torch import load as st_load

from training import StateError

if sys.byteorder != "little":  # raw tensor bytes are hashed as they lie in memory
    raise ImportError("crowdtrain's canonical state bytes assume a little-endian host")

DOMAIN = b"crowdtrain/state/v1\n"
DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 1, torch.bfloat16: 2, torch.float16: 3, torch.int64: 4,
    torch.uint8: 5, torch.float64: 6, torch.int32: 7,
}
PARAM, EXP_AVG, EXP_AVG_SQ, STEP, PGRAD, MOMENTUM = (
    "param/", "adam.exp_avg/", "adam.exp_avg_sq/", "adam.step", "pgrad/", "outer.momentum/")

Tensors = Mapping[str, torch.Tensor]


def raw_bytes(t: torch.Tensor) -> memoryview:
    """The tensor's elements as little-endian bytes, C order (zero-copy for contiguous CPU tensors)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()  # note: a device->host copy and a sync point
    t = t.contiguous().reshape(-1)
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.view(torch.uint8).numpy())


def sorted_names(names) -> list[str]:
    return sorted(names, key=lambda n: n.encode("utf-8"))


def header_table(entries: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> bytes:
    """DOMAIN | u32 n | headers, for (name, dtype, shape) entries already in canonical order."""
    out = [DOMAIN, struct.pack("<I", len(entries))]
    for name, dtype, shape in entries:
        code = DTYPE_CODES.get(dtype)
        if code is None:
            raise StateError(f"tensor {name!r} has dtype {dtype}, which canonical state bytes do not encode")
        nb = name.encode("utf-8")
        if len(nb) > 0xFFFF or len(shape) > 255:
            raise StateError(f"tensor name or rank too large to encode: {name[:80]!r}")
        out.append(struct.pack("<H", len(nb)) + nb + struct.pack("<BB", code, len(shape))
                   + b"".join(struct.pack("<Q", d) for d in shape))
    return b"".join(out)


def canonical_chunks(tensors: Tensors):
    """Yield the canonical byte stream in pieces (no tensor copy on CPU)."""
    names = sorted_names(tensors)
    yield header_table([(n, tensors[n].dtype, tuple(tensors[n].shape)) for n in names])
    for n in names:
        yield raw_bytes(tensors[n])


def canonical_bytes(tensors: Tensors) -> bytes:
    return b"".join(bytes(c) for c in canonical_chunks(tensors))


def tensors_digest(tensors: Tensors) -> bytes:
    """BLAKE3-256 of the canonical bytes (32 bytes). Used for state and batch digests."""
    return digest_parts(canonical_chunks(tensors))


def digest_parts(parts) -> bytes:
    h = blake3.blake3()
    for c in parts:
        h.update(c)
    return h.digest()


def state_digest(state: Tensors) -> bytes:
    """Digest of a full training state (param/*, adam.*); the trace's stateDigest."""
    return tensors_digest(state)


# ---- safetensors blobs ------------------------------------------------------------------
# Exactly one metadata key: safetensors writes `__metadata__` from a hash map, so two or
# more keys come out in a different order per process and the blob hash would wobble.
ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
             torch.uint8: "U8", torch.float64: "F64", torch.int32: "I32"}


def to_blob(tensors: Tensors, kind: str) -> bytes:
    """Serialize `tensors` as safetensors with metadata {"format": kind}.

    Written here (not by `safetensors.torch.save`) so the layout is fixed: tensors in
    canonical name order, data sections back to back, header JSON in that order padded
    with spaces to 8 bytes. Same tensors -> same bytes, on every machine; any safetensors
    reader loads it.
    """
    names = sorted_names(tensors)
    header: dict[str, object] = {"__metadata__": {"format": kind}}
    parts, off = [], 0
    for n in names:
        t = tensors[n]
        if t.dtype not in ST_DTYPES:
            raise StateError(f"tensor {n!r} has dtype {t.dtype}, which blobs do not store")
        raw = raw_bytes(t)
        header[n] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + raw.nbytes]}
        off += raw.nbytes
        parts.append(raw)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    return b"".join([struct.pack("<Q", len(hj)), hj, *parts])


def from_blob(blob: bytes | bytearray | Path | str, kind: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors blob (bytes or a path) to CPU tensors; never unpickles."""
    data = Path(blob).read_bytes() if isinstance(blob, (str, Path)) else bytes(blob)
    try:
        out = st_load(data)
    except Exception as e:  # safetensors raises its own SafetensorError on malformed input
        raise StateError(f"not a valid safetensors blob ({len(data)} bytes): {e}") from None
    if kind is not None:
        got = _format_of(data)
        if got != kind:
            raise StateError(f"expected a {kind!r} blob, got format {got!r}")
    return out


def _format_of(data: bytes) -> str | None:
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    return meta.get("format")


def select(tensors: Tensors, prefix: str) -> dict[str, torch.Tensor]:
    """Entries under `prefix` with the prefix stripped (e.g. select(state, PARAM))."""
    return {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}


def prefixed(tensors: Tensors, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + n: t for n, t in tensors.items()}


def check_names(got: Tensors, want: Tensors, what: str) -> None:
    """Raise StateError unless `got` has exactly `want`'s names, shapes and dtypes."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise StateError(f"{what}: missing {missing[:5]} / unexpected {extra[:5]} tensors for this job's model")
    for n, t in want.items():
        if got[n].shape != t.shape or got[n].dtype != t.dtype:
            raise StateError(f"{what}: tensor {n!r} is {got[n].dtype}{list(got[n].shape)}, "
                             f"expected {t.dtype}{list(t.shape)}")
