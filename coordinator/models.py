"""SQLAlchemy 2 ORM models: the coordinator's durable state (docs/coordinator.md, "Tables").

Live leases are in Redis (atomic, expiring); the `leases` table is their history, written
on grant and on end, so a dashboard can show who held what and why it ended. Times are
unix seconds (float, UTC). Digests are `0x`-hex strings (66 chars); addresses are
checksummed (42 chars). Chain job ids are the primary key of `jobs` (BigInteger: ids
beyond 2^63 are refused at registration).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Double, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HASH = String(66)
ADDRESS = String(42)
LEASE_ID = String(32)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False, comment="on-chain job id")
    spec_hash: Mapped[str] = mapped_column(HASH)
    spec_blob: Mapped[str | None] = mapped_column(HASH, comment="blob holding the canonical spec JSON; NULL until uploaded")
    owner: Mapped[str] = mapped_column(ADDRESS)
    status: Mapped[str] = mapped_column(String(32), comment="held | active | awaiting_aggregation | complete | closed")
    hold_reason: Mapped[str | None] = mapped_column(Text)
    rounds_total: Mapped[int | None] = mapped_column(Integer, comment="R from the spec; NULL while held without one")
    units_per_round: Mapped[int | None] = mapped_column(Integer, comment="K from the spec; NULL while held without one")
    current_round: Mapped[int] = mapped_column(Integer, default=0)
    reward_per_unit: Mapped[str] = mapped_column(String(80), comment="token base units, decimal string")
    registered_at: Mapped[float] = mapped_column(Double)
    register_tx: Mapped[str | None] = mapped_column(HASH, comment="postJob transaction, when the indexer saw it")
    coordinator: Mapped[str | None] = mapped_column(ADDRESS, comment="the job's coordinator on chain")
    chain_status: Mapped[str | None] = mapped_column(String(16), comment="open | completed | closed (on chain)")
    max_units: Mapped[str | None] = mapped_column(String(80), comment="the chain job's maxUnits, decimal string")
    deadline: Mapped[int | None] = mapped_column(BigInteger, comment="the chain job's deadline, unix s")
    complete_tx: Mapped[str | None] = mapped_column(HASH, comment="completeJob transaction")
    final_model_blob: Mapped[str | None] = mapped_column(HASH, comment="G_R, the outer step after the last round")


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("job_id", "round", name="uq_rounds_job_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), comment="open | complete | quorum | cancelled")
    checkpoint_blob: Mapped[str | None] = mapped_column(HASH, comment="global checkpoint G_r; NULL = init from spec seed")
    momentum_blob: Mapped[str | None] = mapped_column(HASH, comment="outer momentum entering this round; NULL = none yet")
    units: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer, default=0, comment="set when the round closes; count units while open")
    opened_at: Mapped[float] = mapped_column(Double)
    deadline: Mapped[float] = mapped_column(Double)
    closed_at: Mapped[float | None] = mapped_column(Double)
    committed_root: Mapped[str | None] = mapped_column(HASH)
    commit_tx: Mapped[str | None] = mapped_column(HASH)
    finalize_tx: Mapped[str | None] = mapped_column(HASH)
    settle_state: Mapped[str | None] = mapped_column(String(16), comment="NULL (not started) | committing | "
                                                     "committed | finalized")
    settle_owner: Mapped[str | None] = mapped_column(String(32), comment="token of the process holding the settle lease")
    settle_lease_until: Mapped[float | None] = mapped_column(Double, comment="unix s; another process may take over after")
    settle_error: Mapped[str | None] = mapped_column(Text, comment="last settlement failure, cleared on success")
    committed_total: Mapped[str | None] = mapped_column(String(80), comment="token base units, decimal string")
    committed_units: Mapped[int | None] = mapped_column(Integer, comment="leaves in the committed tree")
    challenge_end: Mapped[int | None] = mapped_column(BigInteger, comment="unix s (chain time) the window closes")
    val_loss: Mapped[float | None] = mapped_column(Double, comment="validation loss of G_{r+1}, nats/token")


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("round_id", "index", name="uq_units_round_index"),
                      Index("ix_units_round_id_status", "round_id", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    round: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer, comment="slot k")
    status: Mapped[str] = mapped_column(String(32), comment="queued | leased | verifying | accepted | cancelled")
    current_lease: Mapped[str | None] = mapped_column(LEASE_ID)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    slot_state_blob: Mapped[str | None] = mapped_column(HASH, comment="slot k's inner optimizer state; NULL = fresh")
    accepted_result_id: Mapped[int | None] = mapped_column(Integer)
    revoked_by_dispute: Mapped[int | None] = mapped_column(BigInteger, comment="market dispute whose ruling 2 "
                                                           "revoked this unit's leaf")


class Lease(Base):
    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(LEASE_ID, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    worker: Mapped[str] = mapped_column(ADDRESS, index=True)
    granted_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double, comment="as of the grant; heartbeats extend it in Redis only")
    ended_at: Mapped[float | None] = mapped_column(Double)
    end_reason: Mapped[str | None] = mapped_column(String(32), comment="accepted | rejected | released | expired | cancelled")


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    lease_id: Mapped[str] = mapped_column(LEASE_ID, unique=True)
    worker: Mapped[str] = mapped_column(ADDRESS, index=True)
    input_hash: Mapped[str] = mapped_column(HASH)
    output_hash: Mapped[str] = mapped_column(HASH, comment="also the output blob")
    trace_root: Mapped[str] = mapped_column(HASH)
    trace_blob: Mapped[str] = mapped_column(HASH)
    snapshot_blobs: Mapped[list[str]] = mapped_column(JSON)
    result_hash: Mapped[str] = mapped_column(HASH, comment="EIP-712 WorkResult digest = round leaf resultHash")
    signature: Mapped[str] = mapped_column(String(132))
    verdict: Mapped[str] = mapped_column(String(16), comment="accepted | rejected")
    reason: Mapped[str] = mapped_column(Text)
    evidence_blob: Mapped[str | None] = mapped_column(HASH)
    submitted_at: Mapped[float] = mapped_column(Double)


class Worker(Base):
    __tablename__ = "workers"

    address: Mapped[str] = mapped_column(ADDRESS, primary_key=True)
    first_seen: Mapped[float] = mapped_column(Double)
    last_seen: Mapped[float] = mapped_column(Double)


class Blob(Base):
    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(HASH, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, comment="bytes")
    uploader: Mapped[str | None] = mapped_column(ADDRESS, comment="NULL for blobs the coordinator wrote itself")
    created_at: Mapped[float] = mapped_column(Double)


class ChainCursor(Base):
    __tablename__ = "chain_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True, comment="indexer name")
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(HASH)
    updated_at: Mapped[float] = mapped_column(Double)


class ChainEvent(Base):
    """One decoded log of the Market or the JuryArbiter, indexed at a confirmation depth.
    Unique by (block hash, log index): re-indexing a block never duplicates a row, and the
    rows of a block that a reorg removed are deleted (they carry that block's hash)."""

    __tablename__ = "chain_events"
    __table_args__ = (UniqueConstraint("block_hash", "log_index", name="uq_chain_events_block_log"),
                      Index("ix_chain_events_job_id_id", "job_id", "id"),
                      Index("ix_chain_events_block_number", "block_number"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(HASH)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(HASH)
    contract: Mapped[str] = mapped_column(ADDRESS)
    name: Mapped[str] = mapped_column(String(64), comment="event name from the ABI")
    job_id: Mapped[int | None] = mapped_column(BigInteger, comment="the event's jobId, when it has one below 2^63")
    args: Mapped[dict[str, Any]] = mapped_column(JSON, comment="decoded arguments; bytes 0x-hex, big ints strings")


class ChainBlock(Base):
    """Hashes of indexed blocks (each poll's last block and every block with an event), the
    trail the indexer walks back on to find where a reorg forked off."""

    __tablename__ = "chain_blocks"

    indexer: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(HASH)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Double)
