"""Verifier settings: flags > `CROWDTRAIN_VERIFIER_*` environment > TOML config file > defaults.

Durations are seconds. `audit_segments`: None samples the spec's m segments per unit (the
escape probability of a worker faking a fraction f of its segments is then (1-f)^m);
0 replays every segment (an auditor, f > 0 is always caught); n > 0 samples n.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from protocol.agentkit import AgentSettings


class VerifierSettings(AgentSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDTRAIN_VERIFIER_", extra="forbid", frozen=True)

    data_dir: Path = Field(Path("var/verifier"), description="blob cache and the state file (pending reveals)")
    audit: bool = Field(True, description="replay committed units and challenge faults")
    jury: bool = Field(True, description="vote when drawn as a juror")
    keeper: bool = Field(True, description="resolve disputes and withdraw payouts/rewards when possible")
    audit_segments: int | None = Field(None, ge=0, description="None: the spec's m; 0: every segment; n: n draws")
    jobs: list[int] = Field(default_factory=list, description="job ids to audit; empty = every job")
    poll_interval_s: float = Field(1.0, gt=0, description="how often to read new chain events")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="replay device; auto = the spec's")
    start_block: int | None = Field(None, ge=0, description="first block to read on a fresh state "
                                    "(default: the deployment's start block)")
