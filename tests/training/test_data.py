"""Packing, loading with verification, and the documented batch derivation."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from protocol.hashing import from_hex, sha256, to_hex
from training import DatasetError
from training.data import BATCH_DOMAIN, Dataset, load_dataset, pack


def test_pack_is_deterministic_and_hash_is_manifest_sha256(dataset_dir: Path, tmp_path: Path, sources) -> None:
    again = pack(sources, tmp_path, source="test", shard_bytes=1 << 17)
    raw = (dataset_dir / "manifest.json").read_bytes()
    assert again == sha256(raw) == sha256((tmp_path / "manifest.json").read_bytes())
    m = json.loads(raw)
    assert raw == json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    assert len(m["train"]) >= 2 and m["documents"]["val"] >= 1  # several shards, a held-out split
    for sh in m["train"] + m["val"]:
        assert to_hex(sha256((dataset_dir / sh["file"]).read_bytes())) == sh["sha256"]
    total = sum(p.stat().st_size for _, p in sources) + len(sources)  # + one separator per document
    assert sum(sh["tokens"] for sh in m["train"] + m["val"]) == total


def test_load_rejects_tampered_shard_and_wrong_hash(dataset_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "ds"
    shutil.copytree(dataset_dir, d)
    good = load_dataset(d)
    with pytest.raises(DatasetError, match="the job spec wants"):
        load_dataset(d, expected_hash="0x" + "00" * 32)
    shard = d / "train-00001.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="does not match its manifest hash"):
        load_dataset(d, expected_hash=good.hash)
    shard.unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_dataset(d)
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_dataset(tmp_path / "nowhere")


def test_batch_is_the_documented_pure_function(dataset: Dataset) -> None:
    b = dataset.batch(seed=3, round=1, unit=2, step=4, batch_size=5, seq_len=16)
    assert b.shape == (5, 17) and str(b.dtype) == "torch.uint8"
    # recompute from docs/training.md with nothing but hashlib and numpy
    n = len(dataset.train)
    for row in range(5):
        key = BATCH_DOMAIN + struct.pack("<QQQQQ", 3, 1, 2, 4, row)
        o = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % (n - 16)
        assert np.array_equal(b[row].numpy(), dataset.train[o:o + 17])
    assert (dataset.batch(seed=3, round=1, unit=2, step=4, batch_size=5, seq_len=16) == b).all()
    for other in ({"seed": 4}, {"round": 2}, {"unit": 1}, {"step": 5}):
        kw = {"seed": 3, "round": 1, "unit": 2, "step": 4, **other}
        assert not (dataset.batch(batch_size=5, seq_len=16, **kw) == b).all()


def test_pack_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crowdtrain.cli import app

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello world\n" * 50)
    (src / "b.txt").write_text("goodbye\n" * 50)
    res = CliRunner().invoke(app, ["dataset", "pack", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    h = sha256((tmp_path / "out" / "manifest.json").read_bytes())
    assert to_hex(h) in res.output
    ds = load_dataset(tmp_path / "out", from_hex(to_hex(h)))
    assert bytes(ds.train[:12]) in (b"hello world\n", b"goodbye\ngood")
    res = CliRunner().invoke(app, ["dataset", "verify", str(tmp_path / "out"), "--hash", to_hex(h)])
    assert res.exit_code == 0 and "ok" in res.output
    res = CliRunner().invoke(app, ["dataset", "pack", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "does not exist" in res.output
