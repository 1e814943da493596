"""A job's dataset as the coordinator sees it: present or not, and a packed directory.

A dataset is its manifest (the blob whose SHA-256 is the spec's `dataset`) plus the shards
the manifest lists (`train` and `val`, each `{"file", "sha256"}`). It is present when
`<datasets_dir>/<0x hash>/manifest.json` exists (an operator packed it there with
`crowdtrain dataset pack`), or when the manifest and every shard are in the blob store (the
owner uploaded them with `crowdtrain job post`). `materialize` builds the packed directory
from the blob store with hard links (blobs are immutable, so nothing is copied).

Torch-free: job intake runs it in the API process; the replay intake and the aggregator
hand the directory to training code in a spawned process.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from coordinator.errors import UnavailableError

BlobPath = Callable[[str], Path]
MAX_MANIFEST_BYTES = 64 << 20


def manifest_shards(manifest_bytes: bytes) -> list[tuple[str, str]]:
    """(file name, 0x sha256) of every shard a manifest lists; ValueError when malformed."""
    try:
        manifest = json.loads(manifest_bytes)
        return [(str(sh["file"]), str(sh["sha256"]).lower()) for split in ("train", "val")
                for sh in manifest.get(split, [])]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"dataset manifest is malformed ({e.__class__.__name__}: {e})") from None


def _bad_name(name: str) -> bool:
    return Path(name).name != name or name.startswith(".")


def missing_reason(blob_path: BlobPath, datasets_dir: Path, dataset: str, *, job_id: int | None = None) -> str | None:
    """Why dataset `dataset` (0x hash) cannot be used yet, or None when it is present."""
    if (datasets_dir / dataset / "manifest.json").is_file():
        return None
    where = f"PUT /blobs/jobs/{job_id}/<sha256>" if job_id is not None else "PUT /blobs/jobs/<job>/<sha256>"
    manifest = blob_path(dataset)
    if not manifest.is_file():
        return (f"waiting for the dataset: its manifest (blob {dataset}) is not uploaded; the owner uploads the "
                f"manifest and its shards ({where}, done by `crowdtrain job post`)")
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        return f"dataset manifest {dataset} is larger than {MAX_MANIFEST_BYTES} bytes; it cannot be a manifest"
    try:
        shards = manifest_shards(manifest.read_bytes())
    except ValueError as e:
        return f"dataset {dataset}: {e}; post the job with the hash of a manifest packed by `crowdtrain dataset pack`"
    bad = [name for name, _ in shards if _bad_name(name)]
    if bad:
        return f"dataset {dataset}: the manifest names shard files with path parts ({bad[0]!r}); repack it"
    absent = [(name, digest) for name, digest in shards if not blob_path(digest).is_file()]
    if absent:
        listed = ", ".join(f"{n} ({d})" for n, d in absent[:3])
        return (f"waiting for {len(absent)} of {len(shards)} dataset shard(s): {listed}"
                f"{' ...' if len(absent) > 3 else ''}; the owner uploads them with {where}")
    return None


def materialize(blob_path: BlobPath, datasets_dir: Path, dataset: str) -> Path:
    """`<datasets_dir>/<dataset>`, built from the blob store when absent. Raises
    UnavailableError naming what is missing. Safe against concurrent callers (the directory
    is built under a temporary name and renamed into place)."""
    out = datasets_dir / dataset
    if (out / "manifest.json").is_file():
        return out
    manifest_path = blob_path(dataset)
    if not manifest_path.is_file():
        raise UnavailableError(f"dataset {dataset} is neither at {out} nor in the blob store: the job "
                               "owner uploads its manifest and shards (`crowdtrain job post`), or pack it there")
    try:
        shards = manifest_shards(manifest_path.read_bytes())
    except ValueError as e:
        raise UnavailableError(f"dataset manifest {dataset}: {e}") from None
    tmp = datasets_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        _link(manifest_path, tmp / "manifest.json")
        for name, digest in shards:
            src = blob_path(digest)
            if _bad_name(name) or not src.is_file():
                raise UnavailableError(f"dataset {dataset}: shard {name!r} ({digest}) is not in the "
                                       "blob store or has a bad name; the owner must upload every shard")
            _link(src, tmp / name)
        try:
            os.rename(tmp, out)
        except OSError:  # another request materialised it first
            if not (out / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # no copy: blobs are immutable
    except OSError:  # another filesystem
        shutil.copyfile(src, dst)
