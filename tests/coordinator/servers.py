"""Real coordinator processes (uvicorn on free ports) sharing one database, one Redis and
one blob directory: the multi-process test and bench/coordinator_throughput.py use them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import httpx

from coordinator.chain import ChainJob
from tests.coordinator.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def coordinator_processes(n: int, *, workdir: Path, database_url: str, redis_url: str, prefix: str,
                          stakes: dict[str, int], jobs: list[ChainJob], extra_env: dict[str, str] | None = None,
                          workers_per_process: int = 1, pids: list[int] | None = None) -> Iterator[list[str]]:
    """Start `n` coordinator processes; yields their base URLs (and appends their PIDs to
    `pids` when given); stops them by PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    gw_file = workdir / "gateway.json"
    gw_file.write_text(json.dumps({"stakes": stakes, "jobs": [asdict(j) for j in jobs]}))
    env = {**os.environ, "CROWDTRAIN_TEST_GATEWAY": str(gw_file), "CROWDTRAIN_COORD_DATABASE_URL": database_url,
           "CROWDTRAIN_COORD_REDIS_URL": redis_url, "CROWDTRAIN_COORD_REDIS_PREFIX": prefix,
           "CROWDTRAIN_COORD_DATA_DIR": str(workdir / "data"), "CROWDTRAIN_COORD_AUTO_MIGRATE": "true",
           "CROWDTRAIN_COORD_AGGREGATE": "false",  # StructuralIntake results are not real outputs
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    procs: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(n):
            port = free_port()
            log = workdir / f"coordinator-{i}.log"
            with open(log, "wb") as out:
                p = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "tests.coordinator.mp_app:create",
                                      "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                      "--workers", str(workers_per_process),
                                      # longer than any client waits between requests: a connection the
                                      # server closes while the client reuses it is a spurious ReadError
                                      "--timeout-keep-alive", "120"],
                                     cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append((p, f"http://127.0.0.1:{port}", log))
            if pids is not None:
                pids.append(p.pid)
        deadline = time.monotonic() + 60
        for p, url, log in procs:
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"coordinator at {url} exited with {p.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"coordinator at {url} did not answer /health:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield [url for _, url, _ in procs]
    finally:
        for p, _, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _, _ in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
