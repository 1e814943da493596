"""Keeping a lease alive from a background thread while the main thread trains.

The thread heartbeats every `interval_s` (a third of the lease TTL by default, so two
consecutive failures still leave time). The coordinator answering 404/410/403 means the
lease is gone (expired and re-queued, or held by someone else): `lost` is set and the
training loop stops at its next step instead of finishing work nobody will accept. A
coordinator that does not answer is retried (the lease may still be alive); that is
logged, not fatal. While a result is being judged the lease cannot expire (the
coordinator holds it in `submitting`), so the agent pauses the heartbeat around the
submission and resumes it if the coordinator hands the lease back (503).
"""
from __future__ import annotations

import threading
from typing import Callable

from protocol.api_client import ApiError, ApiForbidden, ApiGone, ApiNotFound, CoordinatorApi


class Heartbeat:
    def __init__(self, api: CoordinatorApi, lease_id: str, *, interval_s: float,
                 warn: Callable[[str], None] = lambda _m: None) -> None:
        self.api, self.lease_id, self.interval_s, self.warn = api, lease_id, interval_s, warn
        self.lost = threading.Event()
        self.reason = ""
        self.beats = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease_id[:8]}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.interval_s + 35)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._paused.is_set():
                continue
            try:
                self.api.heartbeat(self.lease_id)
                self.beats += 1
            except (ApiGone, ApiNotFound, ApiForbidden) as e:
                self.reason = str(e.detail)
                self.lost.set()
                return
            except ApiError as e:  # unreachable or refusing for another reason: the lease may live on
                self.warn(f"heartbeat for lease {self.lease_id} failed ({e}); retrying")
