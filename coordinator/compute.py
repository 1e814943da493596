"""A lazily spawned process pool for torch work (judging results, the outer step).

Spawned, not forked: the API process holds threads, sockets and a Redis pool that a fork
would copy half-way; a spawned child imports only what the job needs, and its pinned
thread count (`set_determinism`) cannot leak into request threads. The API process itself
never imports torch.
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, TypeVar

from coordinator.errors import UnavailableError

T = TypeVar("T")


class ComputeUnavailable(Exception):
    """Raised in a child when it cannot do the work (picklable: message only)."""


class ComputePool:
    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def run(self, fn: Callable[[Any], T], arg: Any, *, timeout_s: float, what: str) -> T:
        """fn(arg) in a child. UnavailableError when it times out, the child dies, or it
        raises ComputeUnavailable; other exceptions propagate as raised in the child."""
        try:
            return self._executor().submit(fn, arg).result(timeout=timeout_s)
        except FutureTimeout:
            self.close()  # the stuck child goes with the pool; the next call starts a fresh one
            raise UnavailableError(f"{what} did not finish within {timeout_s:g} s; retry later") from None
        except BrokenProcessPool:
            self.close()
            raise UnavailableError(f"the process running {what} died (out of memory?); retry later") from None
        except ComputeUnavailable as e:
            raise UnavailableError(str(e)) from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
