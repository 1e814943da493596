"""Request and response bodies of the coordinator's HTTP API (docs/coordinator.md).

Shared by the coordinator (which serves them), the worker and the verifier (which call
it), so the three can never disagree about a field. Torch-free pydantic models; every
model forbids unknown keys so a typo is a 422, not a silently ignored field.

Conventions: digests are `0x` + 64 lower-case hex digits (upper case is accepted and
lower-cased); addresses are EIP-55 checksummed on output; times are unix seconds
(float); token amounts are decimal strings; `job_id` is the on-chain job id.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from eth_utils import is_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "Hash32", "Address", "SignatureHex", "LeaseId",
    "ErrorBody", "BlobReceipt", "JobRegistration", "JobView", "RoundView", "UnitView",
    "UnitInputs", "LeaseGrant", "LeaseStatus", "ResultSubmission", "ResultReceipt", "ResultView",
    "EventMessage", "HealthView",
]

MAX_SNAPSHOTS = 100_000  # spec caps H at 1e6 and snapshot_interval >= 1; 1e5 blobs per unit is plenty


def _lower_hash(v: str) -> str:
    return v.lower()


def _checksum(v: str) -> str:
    if not is_address(v):
        raise ValueError(f"not a 20-byte hex address: {v[:60]!r}")
    return to_checksum_address(v)


Hash32 = Annotated[str, Field(pattern=r"^0[xX][0-9a-fA-F]{64}$", examples=["0x" + "ab" * 32]),
                   AfterValidator(_lower_hash)]
Address = Annotated[str, Field(min_length=40, max_length=42), AfterValidator(_checksum)]
SignatureHex = Annotated[str, Field(pattern=r"^0[xX][0-9a-fA-F]{130}$", description="65 bytes r ++ s ++ v")]
LeaseId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="32 lower-case hex characters")]
Uint256 = Annotated[int, Field(ge=0, lt=2**256)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(_Wire):
    """Every 4xx/5xx answer: `detail` says what was wrong and what to do."""

    detail: str | list[dict[str, Any]]


class HealthView(_Wire):
    status: Literal["ok"]
    db_revision: str
    chain_id: int


class BlobReceipt(_Wire):
    sha256: Hash32
    size: int = Field(description="bytes")
    created: bool = Field(description="false when the blob was already stored (idempotent re-upload)")


class JobRegistration(_Wire):
    """Register a job that exists on chain. `spec` is the job spec as a JSON object
    (protocol.spec.JobSpec); the SHA-256 of its canonical bytes must equal the on-chain specHash."""

    job_id: Uint256
    spec: dict[str, Any]


class RoundView(_Wire):
    round: int
    status: Literal["open", "complete", "quorum", "cancelled"]
    checkpoint: Hash32 | None = Field(description="global checkpoint blob G_r; null for round 0 = init from spec seed")
    units: int
    accepted: int
    opened_at: float
    deadline: float
    closed_at: float | None
    committed_root: Hash32 | None
    commit_tx: Hash32 | None
    settle_state: Literal["committing", "committed", "finalized"] | None = Field(
        None, description="settlement on chain; null = not started (the round is open or just closed)")
    settle_error: str | None = Field(None, description="the last settlement failure (retried), null when none")
    finalize_tx: Hash32 | None = None
    challenge_end: int | None = Field(None, description="unix s (chain time) the challenge window closes")
    val_loss: float | None = Field(None, description="validation loss of G_{r+1} after this round, nats/token")


class JobView(_Wire):
    job_id: int
    spec_hash: Hash32
    spec_blob: Hash32 | None = Field(description="blob holding the canonical spec JSON (GET /blobs/<hash>); null "
                                     "while the job is held without its spec")
    owner: Address
    status: Literal["held", "active", "awaiting_aggregation", "complete", "closed"]
    hold_reason: str | None = Field(description="why a held job is not scheduled yet, and what to do")
    rounds: int | None = Field(description="R; null while held without a spec")
    units_per_round: int | None = Field(description="K; null while held without a spec")
    current_round: int
    registered_at: float
    coordinator: Address | None = Field(None, description="the job's coordinator on chain")
    chain_status: Literal["open", "completed", "closed"] | None = Field(None, description="the job on chain")
    register_tx: Hash32 | None = Field(None, description="the postJob transaction (once indexed)")
    complete_tx: Hash32 | None = Field(None, description="the completeJob transaction")
    final_model: Hash32 | None = Field(None, description="G_R blob once the last round is aggregated "
                                       "(GET /jobs/{id}/model)")


class UnitView(_Wire):
    unit_id: int
    job_id: int
    round: int
    unit: int = Field(description="slot index k within the round")
    status: Literal["queued", "leased", "verifying", "accepted", "cancelled"]
    attempts: int
    lease_id: LeaseId | None
    revoked_by_dispute: int | None = Field(None, description="market dispute whose ruling 2 revoked this unit's "
                                           "leaf (it is not paid)")


class UnitInputs(_Wire):
    checkpoint: Hash32 | None = Field(description="round's global checkpoint blob; null = initialise from the spec seed")
    slot_state: Hash32 | None = Field(description="slot k's inner optimizer state blob; null = fresh optimizer")


class LeaseGrant(_Wire):
    lease_id: LeaseId
    unit_id: int
    job_id: int
    round: int
    unit: int = Field(description="slot index k within the round")
    spec_hash: Hash32
    inputs: UnitInputs
    expires_at: float = Field(description="unix seconds; heartbeat before then")
    ttl_s: float


class LeaseStatus(_Wire):
    lease_id: LeaseId
    unit_id: int
    expires_at: float


class ResultSubmission(_Wire):
    """A signed unit result. The signature is the worker's EIP-712 `WorkResult` signature
    (protocol.eip712) over (job_id, round, unit, input_hash, output_hash, trace_root); the
    output blob is `output_hash` itself; every blob must be uploaded before submitting."""

    lease_id: LeaseId
    input_hash: Hash32
    output_hash: Hash32
    trace_root: Hash32
    trace_blob: Hash32
    snapshot_blobs: list[Hash32] = Field(max_length=MAX_SNAPSHOTS)
    signature: SignatureHex


class ResultReceipt(_Wire):
    result_id: int
    unit_id: int
    verdict: Literal["accepted", "rejected"]
    reason: str
    round_status: Literal["open", "complete", "quorum", "cancelled"]


class ResultView(_Wire):
    result_id: int
    unit_id: int
    worker: Address
    lease_id: LeaseId
    input_hash: Hash32
    output_hash: Hash32
    trace_root: Hash32
    trace_blob: Hash32
    snapshot_blobs: list[Hash32]
    result_hash: Hash32 = Field(description="EIP-712 WorkResult digest (the round leaf's resultHash)")
    signature: SignatureHex
    verdict: Literal["accepted", "rejected"]
    reason: str
    evidence_blob: Hash32 | None
    submitted_at: float


class EventMessage(_Wire):
    """One entry of the live event stream (`GET /events`, server-sent events)."""

    id: str = Field(description="Redis stream id, usable as Last-Event-ID")
    kind: str
    job_id: int | None
    data: dict[str, Any]


# ---- agents' additions (worker / verifier / model owner; coordinator/api/routes/agents.py) ----

class CoordinatorInfo(_Wire):
    """`GET /info`: what a model owner needs to post a job this coordinator will settle."""

    chain_id: int
    market_address: Address
    coordinator_address: Address | None = Field(description="the address this coordinator commits rounds from "
                                                "(a job's `coordinator`); null when not configured")


class SettledLeaf(_Wire):
    """One leaf of a committed round's settlement tree (docs/protocol.md "Round leaf")."""

    unit: int = Field(description="slot index k")
    unit_id: int
    result_id: int = Field(description="the accepted result (GET /results/<id>) whose resultHash this is")
    worker: Address
    amount: str = Field(pattern=r"^[0-9]{1,78}$", description="token base units, decimal string")
    result_hash: Hash32
    leaf: Hash32 = Field(description="the leaf hash (keccak256 of keccak256(abi.encode(...)))")
    proof: list[Hash32] = Field(description="sibling hashes from the leaf up to the root")


class RoundSettlement(_Wire):
    """`GET /jobs/{job_id}/rounds/{round}/settlement`: what a committed round pays, with proofs
    (workers claim with them; verifiers challenge with them)."""

    job_id: int
    round: int
    root: Hash32
    total: str = Field(pattern=r"^[0-9]{1,78}$", description="token base units, decimal string")
    commit_tx: Hash32 | None
    leaves: list[SettledLeaf]


__all__ += ["CoordinatorInfo", "SettledLeaf", "RoundSettlement"]


# ---- coordinator: reports and the chain index (coordinator/api/routes/reports.py) ----------

class ReportUnit(_Wire):
    unit: int = Field(description="slot index k")
    unit_id: int
    worker: Address
    result_id: int
    result_hash: Hash32
    leaf: Hash32 | None = Field(description="round leaf hash; null until the round is committed")
    loss_first: float | None = Field(description="training loss of the unit's first inner step (from its trace), "
                                     "nats/token; null when the trace blob is unreadable")
    loss_last: float | None = Field(description="training loss of its last inner step, nats/token")
    revoked_by_dispute: int | None
    claim_tx: Hash32 | None = Field(description="the indexed Claimed transaction paying this leaf")


class ReportRound(_Wire):
    round: int
    status: Literal["open", "complete", "quorum", "cancelled"]
    units: int
    accepted: int
    train_loss_first: float | None = Field(description="mean over accepted units of the first step's loss")
    train_loss_last: float | None = Field(description="mean over accepted units of the last step's loss")
    train_loss_mean: float | None = Field(description="mean over accepted units and all their steps")
    val_loss: float | None = Field(description="validation loss of G_{r+1}, when the coordinator scored it")
    checkpoint: Hash32 | None = Field(description="G_r, the round's input (null: G_0 from the spec seed)")
    root: Hash32 | None
    total: str | None = Field(description="committed total, token base units")
    settle_state: Literal["committing", "committed", "finalized"] | None
    commit_tx: Hash32 | None
    finalize_tx: Hash32 | None
    unit_results: list[ReportUnit]


class ReportWorker(_Wire):
    worker: Address
    units_accepted: int
    units_revoked: int
    earned: str = Field(description="committed, not revoked: units * reward per unit, token base units")
    claimed: str = Field(description="paid out by indexed Claimed events, token base units")


class JobReport(_Wire):
    """`GET /jobs/{id}/report`: the training report (losses, units, workers, chain receipts)."""

    job_id: int
    spec_hash: Hash32
    owner: Address
    coordinator: Address | None
    status: Literal["held", "active", "awaiting_aggregation", "complete", "closed"]
    chain_status: Literal["open", "completed", "closed"] | None
    rounds_total: int | None
    units_per_round: int | None
    reward_per_unit: str
    register_tx: Hash32 | None
    complete_tx: Hash32 | None
    final_model: Hash32 | None
    rounds: list[ReportRound]
    workers: list[ReportWorker]


class ChainEventView(_Wire):
    id: int
    block_number: int
    block_hash: Hash32
    log_index: int
    tx_hash: Hash32
    contract: Address
    name: str
    job_id: int | None
    args: dict[str, Any] = Field(description="decoded arguments: bytes as 0x-hex, integers >= 2^53 as strings")


class ChainStatusView(_Wire):
    indexer_enabled: bool
    settlement_enabled: bool = Field(description="true when this process can sign commits (a key is configured)")
    coordinator_address: Address | None
    cursor_block: int | None = Field(description="last indexed block (null: nothing indexed yet)")
    cursor_hash: Hash32 | None
    events: int = Field(description="indexed events stored")


__all__ += ["ReportUnit", "ReportRound", "ReportWorker", "JobReport", "ChainEventView", "ChainStatusView"]
