"""Canonical state bytes, the digest, blobs, and the Trainer's fast digest path."""
from __future__ import annotations

import struct

import blake3
import pytest
import torch
from safetensors.torch import load as st_load

from training import StateError
from training.state import DOMAIN, canonical_bytes, from_blob, state_digest, to_blob
from training.step import Trainer


def test_canonical_bytes_layout_golden() -> None:
    st = {"param/w": torch.tensor([[1.0, 2.0]]), "adam.step": torch.tensor(3, dtype=torch.int64)}
    want = (DOMAIN + struct.pack("<I", 2)
            + struct.pack("<H", 9) + b"adam.step" + bytes([4, 0])
            + struct.pack("<H", 7) + b"param/w" + bytes([1, 2]) + struct.pack("<QQ", 1, 2)
            + struct.pack("<q", 3) + struct.pack("<ff", 1.0, 2.0))
    assert canonical_bytes(st) == want
    assert state_digest(st) == blake3.blake3(want).digest()
    # golden: any change to the encoding must be a deliberate protocol change
    assert state_digest(st).hex() == "f2e0ea5da9eb2061f002fa5d8e0e81618478d517adebf3e3e5cea156955f29f0"


def test_digest_sensitive_to_value_name_shape_dtype() -> None:
    base = {"a": torch.zeros(2, 2)}
    d = state_digest(base)
    assert state_digest({"a": torch.zeros(4)}) != d
    assert state_digest({"b": torch.zeros(2, 2)}) != d
    assert state_digest({"a": torch.zeros(2, 2, dtype=torch.float64)}) != d
    bumped = torch.zeros(2, 2)
    bumped[1, 1] = 1e-30
    assert state_digest({"a": bumped}) != d
    assert state_digest({"a": torch.zeros(2, 2).t()}) == d  # layout in memory does not matter


def test_trainer_fast_digest_and_snapshot_match_generic(spec) -> None:
    tr = Trainer(spec)
    tok = torch.randint(0, 256, (4, 17), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tr.step(tok, 1e-2)
    assert tr.digest() == state_digest(tr.state())
    snap = tr.snapshot()
    loaded = from_blob(snap, "crowdtrain/state")
    assert state_digest(loaded) == tr.digest()
    assert set(st_load(snap)) == set(tr.state())  # a plain safetensors reader agrees
    tr2 = Trainer(spec)
    tr2.load_state(loaded)
    assert tr2.digest() == tr.digest() and tr2.step_count == 1


def test_blob_bytes_are_deterministic_and_typed() -> None:
    t = {"x/b": torch.arange(6.0).view(2, 3), "x/a": torch.ones(3, dtype=torch.bfloat16)}
    assert to_blob(t, "k") == to_blob(dict(reversed(list(t.items()))), "k")
    assert from_blob(to_blob(t, "k"), "k")["x/b"].equal(t["x/b"])
    with pytest.raises(StateError, match="expected a 'other' blob"):
        from_blob(to_blob(t, "k"), "other")
    with pytest.raises(StateError, match="not a valid safetensors blob"):
        from_blob(b"\x00" * 40)


def test_load_state_rejects_wrong_model(spec, mkspec, dataset) -> None:
    other = Trainer(mkspec(dataset, model="gpt"))
    with pytest.raises(StateError, match="missing"):
        Trainer(spec).load_state(other.state())
