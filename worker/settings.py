"""Worker settings: flags > `CROWDTRAIN_WORKER_*` environment > TOML config file > defaults.

    [worker]-free TOML, one key per field, e.g.
        coordinator_url = "https://coord.example.org"
        rpc_url = "https://rpc.example.org"
        keystore = "~/.crowdtrain/worker.json"
        device = "cuda"
        jobs = [3, 7]

Durations are seconds, sizes bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from protocol.agentkit import AgentSettings


class WorkerSettings(AgentSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDTRAIN_WORKER_", extra="forbid", frozen=True)

    data_dir: Path = Field(Path("var/worker"), description="blob cache and local state")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = the job spec's device; exact-mode jobs are only replayable on the spec's device")
    jobs: list[int] = Field(default_factory=list, description="job ids to work on; empty = every active job")
    poll_interval_s: float = Field(2.0, gt=0, description="wait between claims when no unit is free (at most)")
    heartbeat_interval_s: float | None = Field(None, gt=0, description="default: a third of the lease TTL")
    max_units: int | None = Field(None, ge=1, description="stop after this many submitted units")
    memory_fraction: float = Field(0.9, gt=0, le=1, description="share of free memory a unit may plan to use")
    cache_max_bytes: int | None = Field(None, ge=0, description="prune the blob cache to this size between units")
