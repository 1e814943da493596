"""A local content-addressed cache of coordinator blobs: `<root>/blobs/<aa>/<sha256 hex>`.

Workers and verifiers fetch every input (spec, dataset shards, checkpoints, snapshots)
through it, so a blob crosses the network once per machine however many units use it.
A blob enters the cache only after its bytes hashed to its address: the download goes to
`<root>/tmp/`, is hashed, fsynced and renamed into place (atomic), and made read-only.
A reader therefore sees either no file or a verified one; processes may share a root.
`verify=True` on a read re-hashes the file (a disk that corrupts files at rest).

Datasets (training's packed format: `manifest.json` whose SHA-256 is the dataset hash, plus
shards named in it with their SHA-256) are materialised as directories of hard links
under `<root>/datasets/<hash hex>/`, so `training.data.load_dataset` reads them as packed.
Sizes are bytes. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from protocol import ProtocolError
from protocol.hashing import from_hex

Fetch = Callable[[str, BinaryIO], object]  # (digest, file to write into) -> anything
_HEX = frozenset("0123456789abcdef")


class CacheError(ProtocolError, ValueError):
    """A cached or fetched blob did not hash to its address, or a manifest was malformed."""


def normalize(digest: str) -> str:
    d = digest.lower()
    if not (len(d) == 66 and d.startswith("0x") and set(d[2:]) <= _HEX):
        raise CacheError(f"a blob address is 0x + 64 hex digits, got {digest[:80]!r}")
    return d


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "0x" + h.hexdigest()


class BlobCache:
    """Blobs under `root`; `fetch(digest, file)` downloads a missing blob (e.g.
    `CoordinatorApi.download_blob`)."""

    def __init__(self, root: Path, fetch: Fetch | None = None) -> None:
        self.root = Path(root)
        self.fetch = fetch
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        d = normalize(digest)
        return self.root / "blobs" / d[2:4] / d[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _install(self, tmp: Path, digest: str) -> Path:
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)  # atomic; a concurrent twin wrote the same verified bytes
        return dest

    def get(self, digest: str, *, verify: bool = False) -> Path:
        """Path of blob `digest`, downloading it first when absent. Raises CacheError when
        the fetched (or, with verify, the cached) bytes hash to another address."""
        d = normalize(digest)
        dest = self.path(d)
        if dest.is_file():
            if not verify or _hash_file(dest) == d:
                return dest
            dest.unlink()  # corrupted at rest: fetch again
        if self.fetch is None:
            raise CacheError(f"blob {d} is not cached and this cache has no source to fetch it from")
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "w+b") as f:
                self.fetch(d, f)
                f.flush()
                os.fsync(f.fileno())
            got = _hash_file(tmp)
            if got != d:
                raise CacheError(f"fetched bytes for blob {d} hash to {got}; not caching them")
            return self._install(tmp, d)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, digest: str, *, verify: bool = False) -> bytes:
        return self.get(digest, verify=verify).read_bytes()

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store bytes produced locally; returns (digest, path)."""
        d = "0x" + hashlib.sha256(data).hexdigest()
        dest = self.path(d)
        if dest.is_file():
            return d, dest
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return d, self._install(tmp, d)
        finally:
            tmp.unlink(missing_ok=True)

    # -- datasets ----------------------------------------------------------------------
    def dataset_dir(self, manifest_digest: str) -> Path:
        """A packed-dataset directory for the manifest blob `manifest_digest` (the job spec's
        `dataset`), fetching the manifest and every shard it names (hash-checked)."""
        d = normalize(manifest_digest)
        out = self.root / "datasets" / d[2:]
        if (out / "manifest.json").is_file():
            return out
        manifest_path = self.get(d)
        try:
            manifest = json.loads(manifest_path.read_bytes())
            shards = [(sh["file"], normalize(sh["sha256"])) for split in ("train", "val")
                      for sh in manifest.get(split, [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CacheError(f"dataset manifest {d} is malformed ({e}); the job's dataset cannot be fetched") from None
        tmp = self.root / "tmp" / f"ds-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            os.link(manifest_path, tmp / "manifest.json")
            for name, digest in shards:
                if Path(name).name != name or name.startswith(".") or name == "manifest.json":
                    raise CacheError(f"dataset manifest {d} names shard {name!r}: only plain file names are allowed")
                os.link(self.get(digest), tmp / name)
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, out)
            except OSError:  # another process materialised it first
                if not (out / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    # -- housekeeping ------------------------------------------------------------------
    def usage(self) -> int:
        """Bytes held by cached blobs (dataset directories are hard links: counted once)."""
        return sum(p.stat().st_size for p in (self.root / "blobs").rglob("*") if p.is_file())

    def prune(self, max_bytes: int, *, keep: Iterable[str] = ()) -> int:
        """Delete least recently modified blobs (never those in `keep`) until usage <= max_bytes;
        returns the bytes freed. Dataset directories keep their own links to shards."""
        protect = {normalize(k) for k in keep}
        files = sorted((p for p in (self.root / "blobs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        freed = 0
        for p in files:
            if total - freed <= max_bytes:
                break
            if "0x" + p.name in protect:
                continue
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            freed += size
        return freed


def verify_bytes(data: bytes, digest: str) -> None:
    """Raise CacheError unless `data` hashes to `digest`."""
    got = hashlib.sha256(data).digest()
    if got != from_hex(digest):
        raise CacheError(f"bytes hash to 0x{got.hex()}, expected {digest}")
