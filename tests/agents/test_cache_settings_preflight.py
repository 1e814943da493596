"""Unit level: the content-addressed cache, settings precedence, pre-flight estimates, amounts."""
from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from protocol.agentkit import AgentConfigError, fmt_amount, parse_amount
from protocol.blobcache import BlobCache, CacheError
from protocol.spec import parse_spec
from tests.agents.harness import tiny_spec_text
from training.data import load_dataset
from training.models import count_params
from verifier.settings import VerifierSettings
from worker.preflight import Estimate, estimate, hardware_checks, param_count
from worker.settings import WorkerSettings


def sha(b: bytes) -> str:
    return "0x" + hashlib.sha256(b).hexdigest()


class Source:
    """A blob source counting fetches; `lie` serves other bytes than asked for."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs, self.fetches, self.lie = blobs, 0, False

    def __call__(self, digest: str, out: io.BufferedIOBase) -> None:
        self.fetches += 1
        out.write(b"tampered" if self.lie else self.blobs[digest])


def test_cache_fetches_once_verifies_and_refuses_wrong_bytes(tmp_path: Path) -> None:
    data = os.urandom(3000)
    src = Source({sha(data): data})
    cache = BlobCache(tmp_path, fetch=src)
    p = cache.get(sha(data))
    assert p.read_bytes() == data and cache.read(sha(data)) == data and src.fetches == 1
    assert not p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only once verified
    other = os.urandom(10)
    src.blobs[sha(other)] = other
    src.lie = True
    with pytest.raises(CacheError, match="hash to"):
        cache.get(sha(other))
    assert not cache.has(sha(other)) and list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(CacheError, match="0x \\+ 64 hex"):
        cache.get("0x1234")


def test_cache_verify_refetches_a_blob_corrupted_at_rest(tmp_path: Path) -> None:
    data = b"x" * 100
    src = Source({sha(data): data})
    cache = BlobCache(tmp_path, fetch=src)
    p = cache.get(sha(data))
    os.chmod(p, 0o644)
    p.write_bytes(b"y" * 100)
    assert cache.read(sha(data)) == b"y" * 100  # trusted without verify (verified when written)
    assert cache.read(sha(data), verify=True) == data and src.fetches == 2


def test_cache_materialises_a_dataset_and_refuses_path_tricks(tmp_path: Path, dataset) -> None:
    ds_dir, ds_hash = dataset
    blobs = {sha(f.read_bytes()): f.read_bytes() for f in ds_dir.iterdir()}
    cache = BlobCache(tmp_path / "c", fetch=Source(blobs))
    d = cache.dataset_dir(ds_hash)
    assert "0x" + load_dataset(d, ds_hash).hash.hex() == ds_hash
    assert cache.dataset_dir(ds_hash) == d  # second call: no work
    evil = b'{"format":"crowdtrain-dataset/1","train":[{"file":"../escape.bin","sha256":"%s","tokens":1}]}' % \
        sha(b"a").encode()
    cache2 = BlobCache(tmp_path / "c2", fetch=Source({sha(evil): evil, sha(b"a"): b"a"}))
    with pytest.raises(CacheError, match="plain file names"):
        cache2.dataset_dir(sha(evil))
    assert not (tmp_path / "c2" / "datasets" / "escape.bin").exists()


def test_cache_prune_keeps_protected_and_recent(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    digests = [cache.put(bytes([i]) * 1000)[0] for i in range(5)]
    for i, d in enumerate(digests):
        os.utime(cache.path(d), (1_000 + i, 1_000 + i))
    freed = cache.prune(2500, keep=[digests[0]])
    assert freed == 3000 and cache.usage() == 2000
    assert [cache.has(d) for d in digests] == [True, False, False, False, True]


def test_settings_precedence_flags_env_toml_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text('coordinator_url = "http://toml:1"\nrpc_url = "http://toml:2"\npoll_interval_s = 9\njobs = [3, 4]\n')
    monkeypatch.setenv("CROWDTRAIN_WORKER_RPC_URL", "http://env:2")
    s = WorkerSettings.load(cfg, poll_interval_s=0.5)
    assert (s.coordinator_url, s.rpc_url, s.poll_interval_s, s.jobs) == ("http://toml:1", "http://env:2", 0.5, [3, 4])
    assert s.device == "auto" and s.data_dir == Path("var/worker")
    monkeypatch.setenv("CROWDTRAIN_WORKER_CONFIG", str(cfg))
    assert WorkerSettings.load().coordinator_url == "http://toml:1"
    # the verifier reads its own prefix only
    assert VerifierSettings.load().rpc_url == "http://127.0.0.1:8545"
    bad = tmp_path / "bad.toml"
    bad.write_text('coordinater_url = "http://typo"\n')
    with pytest.raises(ValueError, match="coordinater_url"):
        WorkerSettings.load(bad)
    with pytest.raises(ValueError, match="http"):
        WorkerSettings.load(None, rpc_url="127.0.0.1:8545")
    with pytest.raises(AgentConfigError, match="does not exist"):
        WorkerSettings.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("model", [
    '[model]\nkind = "mlp"\ncontext = 4\nn_embd = 8\nhidden = 32\nn_layer = 1',
    '[model]\nkind = "mlp"\ncontext = 8\nn_embd = 16\nhidden = 64\nn_layer = 3',
    '[model]\nkind = "gpt"\nn_layer = 2\nn_embd = 32\nn_head = 4\nblock_size = 16',
])
def test_param_count_matches_the_built_model(model: str) -> None:
    text = tiny_spec_text("0x" + "ab" * 32).split("[model]")[0] + model + "\n" + \
        tiny_spec_text("0x" + "ab" * 32).split("n_layer = 1\n", 1)[1]
    spec = parse_spec(text)
    assert param_count(spec) == count_params(spec)


def test_estimate_scales_with_snapshots_and_device() -> None:
    base = parse_spec(tiny_spec_text("0x" + "ab" * 32, H=10, k=5))
    more = parse_spec(tiny_spec_text("0x" + "ab" * 32, H=10, k=1))
    e1 = estimate(base, dataset_bytes=1000, device="cpu")
    e2 = estimate(more, dataset_bytes=1000, device="cpu")
    assert e1.state_bytes == 12 * count_params(base)
    assert (e1.snapshots, e2.snapshots) == (3, 11)
    assert e2.host_bytes - e1.host_bytes == 8 * e1.state_bytes and e2.disk_bytes > e1.disk_bytes
    gpu = estimate(base, dataset_bytes=1000, device="cuda")
    assert e1.host_bytes - gpu.host_bytes == gpu.device_bytes  # on CPU the device memory is host memory


def test_hardware_checks_fail_what_does_not_fit(tmp_path: Path) -> None:
    spec = parse_spec(tiny_spec_text("0x" + "ab" * 32))
    small = estimate(spec, dataset_bytes=1000, device="cpu")
    checks = {c.name: c for c in hardware_checks(spec, small, device="cpu", data_dir=tmp_path)}
    assert checks["host memory"].ok and checks["disk"].ok and checks["device"].ok
    huge = Estimate(small.params, small.state_bytes, 1 << 60, 1 << 60, 1 << 60, small.snapshots, 0)
    checks = {c.name: c for c in hardware_checks(spec, huge, device="cpu", data_dir=tmp_path)}
    assert checks["host memory"].ok is False and "smaller job" in checks["host memory"].detail
    assert checks["disk"].ok is False and "free disk space" in checks["disk"].detail
    import torch

    if not torch.cuda.is_available():
        (dev,) = hardware_checks(spec, small, device="cuda", data_dir=tmp_path)
        assert dev.ok is False and "no CUDA device" in dev.detail


def test_amounts_are_exact() -> None:
    assert parse_amount("12.5", 18) == 12_500_000_000_000_000_000
    assert parse_amount("1,000", 6) == 1_000_000_000
    assert fmt_amount(12_500_000_000_000_000_001, 18, "CTT") == "12.500000000000000001 CTT"
    assert fmt_amount(10**24, 18) == "1,000,000"
    for bad in ("abc", "-1", "0.0000001"):
        with pytest.raises(AgentConfigError):
            parse_amount(bad, 6)
