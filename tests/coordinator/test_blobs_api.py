"""Blob routes: upload, idempotent re-upload, streamed download with ETag, HEAD, 304."""
from __future__ import annotations

import os

import pytest

from coordinator.core.config import Settings
from tests.coordinator.helpers import Env, sha


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """Blob behaviour does not depend on the database; SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'c.sqlite3'}"


def test_upload_download_head_etag(env: Env, settings: Settings) -> None:
    data = os.urandom(300_000)  # several chunks
    d = sha(data)
    r = env.put_blob(env.accounts[0], data)
    assert r.status_code == 201 and r.json() == {"sha256": d, "size": len(data), "created": True}
    path = settings.resolved_blob_dir / d[2:4] / d[2:]
    assert path.read_bytes() == data
    again = env.put_blob(env.accounts[1], data)
    assert again.status_code == 200 and again.json()["created"] is False
    g = env.client.get(f"/blobs/{d}")
    assert g.status_code == 200 and g.content == data and g.headers["etag"] == f'"{d}"'
    assert g.headers["content-type"] == "application/octet-stream"
    h = env.client.head(f"/blobs/{d.upper().replace('0X', '0x')}")
    assert h.status_code == 200 and int(h.headers["content-length"]) == len(data) and h.content == b""
    assert env.client.get(f"/blobs/{d}", headers={"If-None-Match": f'"{d}"'}).status_code == 304
    part = env.client.get(f"/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    missing = env.client.get(f"/blobs/{sha(b'nope')}")
    assert missing.status_code == 404 and "not stored" in missing.json()["detail"]
    with env.ctx.sessions() as s:
        from coordinator import crud

        row = crud.get_blob(s, sha256=d)
        assert row is not None and row.size == len(data) and row.uploader == env.accounts[0].address


def test_empty_blob(env: Env) -> None:
    r = env.put_blob(env.accounts[0], b"")
    assert r.status_code == 201 and r.json()["size"] == 0
    assert env.client.get(f"/blobs/{sha(b'')}").content == b""
