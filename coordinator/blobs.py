"""Content-addressed blob store on the filesystem: `<root>/<aa>/<sha256 hex>`.

An upload streams into a temporary file under `<root>/tmp` while it is hashed (memory use
is one chunk, whatever the blob's size), then is checked against the declared SHA-256,
the declared Content-Length and the size limit, fsynced, and renamed into place. The
rename is atomic, so a reader sees either no blob or the whole blob; a failed or aborted
upload leaves nothing behind. Re-uploading a stored blob is a no-op (`created=False`).
Two concurrent uploads of the same blob both succeed: they write identical bytes.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import AsyncIterator

import anyio

from coordinator.errors import BadRequestError, InvalidInputError, PayloadTooLargeError

_HEX = set("0123456789abcdef")


class BlobHashMismatchError(InvalidInputError):
    def __init__(self, *, expected: str, actual: str, size: int) -> None:
        super().__init__(f"uploaded bytes hash to {actual} ({size} bytes), but the upload declared {expected}: "
                         "the file changed or was corrupted in transit; upload the exact bytes you hashed")
        self.expected, self.actual = expected, actual


class BlobTruncatedError(BadRequestError):
    def __init__(self, *, declared: int, received: int) -> None:
        super().__init__(f"upload truncated: Content-Length declared {declared} bytes, received {received}; "
                         "retry the upload")
        self.declared, self.received = declared, received


def normalize_digest(text: str) -> str:
    """`0x` + 64 lower-case hex digits, or InvalidInputError."""
    s = text.lower()
    if not (len(s) == 66 and s.startswith("0x") and set(s[2:]) <= _HEX):
        raise InvalidInputError(f"a blob address is 0x + 64 hex digits (its SHA-256), got {text[:80]!r}")
    return s


class BlobStore:
    """Filesystem blob store rooted at `root`; uploads larger than `max_bytes` are refused."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        d = normalize_digest(digest)
        return self.root / d[2:4] / d[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read_bytes(self, digest: str) -> bytes | None:
        """Whole blob in memory (small blobs only: specs, traces); None when absent."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def _check_declared(self, declared_length: int | None) -> None:
        if declared_length is not None and declared_length > self.max_bytes:
            raise PayloadTooLargeError(f"blob of {declared_length} bytes exceeds the limit of {self.max_bytes} bytes",
                                       limit=self.max_bytes)

    async def put_stream(self, expected: str, chunks: AsyncIterator[bytes], *,
                         declared_length: int | None) -> tuple[int, bool]:
        """Store the streamed bytes under `expected`; returns (size in bytes, created).

        Raises PayloadTooLargeError (declared or actual size over the limit, checked before
        and during the read), BlobTruncatedError (fewer or more bytes than Content-Length),
        BlobHashMismatchError. Whatever it raises, nothing is stored. A client that
        disconnects mid-upload raises the server's disconnect error, also storing nothing.
        """
        expected = normalize_digest(expected)
        self._check_declared(declared_length)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLargeError(f"blob exceeds the limit of {self.max_bytes} bytes",
                                                   limit=self.max_bytes)
                    h.update(chunk)  # hashing and a page-cache write of one chunk: microseconds
                    f.write(chunk)
                if declared_length is not None and size != declared_length:
                    raise BlobTruncatedError(declared=declared_length, received=size)
                actual = "0x" + h.hexdigest()
                if actual != expected:
                    raise BlobHashMismatchError(expected=expected, actual=actual, size=size)
                f.flush()
                await anyio.to_thread.run_sync(os.fsync, f.fileno())
            created = await anyio.to_thread.run_sync(self._install, tmp, expected)
            return size, created
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store bytes the coordinator produced itself; returns (digest, created)."""
        if len(data) > self.max_bytes:
            raise PayloadTooLargeError(f"blob of {len(data)} bytes exceeds the limit of {self.max_bytes} bytes",
                                       limit=self.max_bytes)
        digest = "0x" + hashlib.sha256(data).hexdigest()
        if self.exists(digest):
            return digest, False
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return digest, self._install(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)

    def _install(self, tmp: Path, digest: str) -> bool:
        dest = self.path(digest)
        if dest.is_file():
            return False
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)  # atomic on one filesystem; a concurrent twin writes the same bytes
        return True
