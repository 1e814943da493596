"""Byte-level datasets: packing files into hashed shards, loading with verification, and
the deterministic batch of unit (r, k) at step i.

Packed dataset directory:
    manifest.json          canonical JSON (sorted keys, compact); its SHA-256 is the dataset
                           hash a job spec references
    train-00000.bin ...    uint8 tokens (= raw bytes), documents joined by SEPARATOR (0)
    val-00000.bin ...      held-out documents, same layout

Batch derivation (docs/training.md): the train shards form one token stream of N tokens.
Row b of the batch of unit (r, k) at step i is the window stream[o : o + seq_len + 1] with
    o = u64_le(SHA-256(b"crowdtrain/batch/v1" || u64_le(seed) || u64_le(r) || u64_le(k)
                       || u64_le(i) || u64_le(b))[0:8]) mod (N - seq_len)
so any language can recompute it, and it never depends on process state.
"""
from __future__ import annotations

import hashlib
import json
import struct
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from protocol.hashing import from_hex, sha256, to_hex
from training import DatasetError

FORMAT = "crowdtrain-dataset/1"
SEPARATOR = 0  # NUL never occurs in text sources; marks a document boundary
DEFAULT_SHARD_BYTES = 4 << 20
BATCH_DOMAIN = b"crowdtrain/batch/v1"
# Held-out split: a document goes to validation when the first byte of SHA-256(relative
# path) is < VAL_THRESHOLD (~5%); a function of the path alone, so adding files never
# moves another file between splits.
VAL_THRESHOLD = 13
STDLIB_EXCLUDE = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
                            "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
                            "encodings"})

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def stdlib_sources() -> tuple[Path, list[Path]]:
    """The running Python's standard library `.py` files, minus tests/GUI/data tables (a few MB)."""
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = [p for p in root.rglob("*.py")
             if not (set(p.relative_to(root).parts[:-1]) & STDLIB_EXCLUDE) and p.is_file()]
    return root, sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _collect(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for root in paths:
        root = Path(root)
        if root.is_file():
            out.append((root.name, root))
        elif root.is_dir():
            out += [(p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file()]
        else:
            raise DatasetError(f"{root} does not exist; pass files or directories to pack")
    out.sort(key=lambda x: x[0])
    if not out:
        raise DatasetError("no input files found to pack")
    return out


def is_validation(rel: str) -> bool:
    return hashlib.sha256(rel.encode("utf-8")).digest()[0] < VAL_THRESHOLD


def pack(files: Iterable[tuple[str, Path]], out: Path, *, source: str,
         shard_bytes: int = DEFAULT_SHARD_BYTES, progress: ProgressFn | None = None) -> bytes:
    """Pack (relative name, path) pairs into `out`; returns the dataset hash (32 bytes).

    Deterministic: same names and contents give the same bytes and hash. Each document is
    followed by one SEPARATOR byte. A split with no documents gets no shards (at least one
    train document is required).
    """
    files = list(files)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for _, p in files)
    streams: dict[str, bytearray] = {"train": bytearray(), "val": bytearray()}
    docs = {"train": 0, "val": 0}
    done = 0
    for rel, p in files:
        split = "val" if is_validation(rel) else "train"
        data = p.read_bytes()
        streams[split] += data
        streams[split].append(SEPARATOR)
        docs[split] += 1
        done += len(data)
        if progress:
            progress(done, total)
    if not streams["train"]:
        raise DatasetError("every input file fell into the validation split; pack more files")
    manifest: dict[str, object] = {"format": FORMAT, "source": source, "vocab_size": 256,
                                   "separator": SEPARATOR, "documents": docs}
    for split, buf in streams.items():
        shards = []
        for j, start in enumerate(range(0, len(buf), shard_bytes)):
            chunk = bytes(buf[start:start + shard_bytes])
            name = f"{split}-{j:05d}.bin"
            (out / name).write_bytes(chunk)
            shards.append({"file": name, "sha256": to_hex(sha256(chunk)), "tokens": len(chunk)})
        manifest[split] = shards
    raw = canonical_json(manifest)
    (out / "manifest.json").write_bytes(raw)
    return sha256(raw)


def pack_paths(paths: Sequence[Path], out: Path, **kw) -> bytes:
    return pack(_collect(paths), out, source="files", **kw)


def pack_stdlib(out: Path, **kw) -> bytes:
    import sys

    root, files = stdlib_sources()
    src = f"python-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}-stdlib"
    return pack([(p.relative_to(root).as_posix(), p) for p in files], out, source=src, **kw)


@dataclass(frozen=True)
class Dataset:
    """A loaded, verified dataset. `train`/`val` are uint8 token streams held in memory (shards joined)."""

    hash: bytes
    manifest: dict
    train: np.ndarray
    val: np.ndarray

    def batch(self, *, seed: int, round: int, unit: int, step: int, batch_size: int, seq_len: int) -> torch.Tensor:
        """uint8 tensor (batch_size, seq_len + 1) for unit (round, unit) at inner step `step`."""
        return torch.from_numpy(window_batch(self.train, batch_offsets(
            seed=seed, round=round, unit=unit, step=step, batch_size=batch_size,
            n_tokens=len(self.train), seq_len=seq_len), seq_len))

    def val_batch(self, index: int, *, batch_size: int, seq_len: int) -> torch.Tensor:
        """Fixed evaluation batch `index` from the held-out stream (falls back to train if empty)."""
        stream = self.val if len(self.val) > seq_len + 1 else self.train
        offs = batch_offsets(seed=0xE7A1, round=0, unit=0, step=index, batch_size=batch_size,
                             n_tokens=len(stream), seq_len=seq_len)
        return torch.from_numpy(window_batch(stream, offs, seq_len))


def batch_offsets(*, seed: int, round: int, unit: int, step: int, batch_size: int,
                  n_tokens: int, seq_len: int) -> list[int]:
    span = n_tokens - seq_len
    if span <= 0:
        raise DatasetError(f"the dataset has {n_tokens} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    head = BATCH_DOMAIN + struct.pack("<QQQQ", seed, round, unit, step)
    return [int.from_bytes(hashlib.sha256(head + struct.pack("<Q", b)).digest()[:8], "little") % span
            for b in range(batch_size)]


def window_batch(stream: np.ndarray, offsets: Sequence[int], seq_len: int) -> np.ndarray:
    return np.stack([stream[o:o + seq_len + 1] for o in offsets])


def load_dataset(path: str | Path, expected_hash: bytes | str | None = None) -> Dataset:
    """Load a packed dataset, verifying the manifest hash and every shard's SHA-256.

    `expected_hash` (the spec's `dataset`) is checked against the manifest's SHA-256.
    """
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise DatasetError(f"{root} has no manifest.json; pack one with `crowdtrain dataset pack`")
    raw = mpath.read_bytes()
    h = sha256(raw)
    if expected_hash is not None:
        want = from_hex(expected_hash) if isinstance(expected_hash, str) else expected_hash
        if h != want:
            raise DatasetError(f"dataset at {root} has hash {to_hex(h)}, but the job spec wants {to_hex(want)}")
    manifest = json.loads(raw)
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{mpath}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}")
    streams = {}
    for split in ("train", "val"):
        parts = []
        for sh in manifest.get(split, []):
            f = root / sh["file"]
            if not f.is_file():
                raise DatasetError(f"shard {f} listed in the manifest is missing")
            data = np.fromfile(f, dtype=np.uint8)
            if to_hex(sha256(memoryview(data))) != sh["sha256"] or len(data) != sh["tokens"]:
                raise DatasetError(f"shard {f} does not match its manifest hash {sh['sha256']}; "
                                   "re-download or re-pack the dataset")
            parts.append(data)
        streams[split] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    return Dataset(hash=h, manifest=manifest, train=streams["train"], val=streams["val"])
