"""Typed facade over `Market` (IMarket): stakes, jobs, rounds, claims, disputes, views.

Token amounts are in the payment token's base unit; times are unix seconds. Methods that
move the caller's tokens into the market (stake, post_job, top_up, challenge) approve the
market first when the allowance is short (`approve=False` to skip). Every send returns a
`TxResult`; sends whose point is an id (post_job, challenge) return `(id, TxResult)`.
Views return dicts keyed by the struct's Solidity field names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from protocol.chain.contract import BoundContract
from protocol.chain.types import Evidence, LeafStatus, Role, RoundLeaf, TraceLeaf
from protocol.eip712 import WorkResult

if TYPE_CHECKING:
    from protocol.chain.client import ChainClient, TxResult
    from protocol.chain.token import TokenApi


class MarketApi(BoundContract):
    def __init__(self, client: "ChainClient", address: str) -> None:
        super().__init__(client, "Market", address)

    def _token(self) -> "TokenApi":
        from protocol.chain.token import TokenApi

        return TokenApi(self.client, self.token_address())

    def _approve(self, amount: int, approve: bool) -> None:
        if approve:
            self._token().ensure_allowance(self.address, amount)

    # -- stakes ------------------------------------------------------------------------
    def stake(self, role: Role | int, amount: int, *, approve: bool = True) -> "TxResult":
        self._approve(amount, approve)
        return self.transact("stake", int(role), amount)

    def request_unstake(self, role: Role | int, amount: int) -> "TxResult":
        return self.transact("requestUnstake", int(role), amount)

    def withdraw_stake(self, role: Role | int) -> "TxResult":
        return self.transact("withdrawStake", int(role))

    # -- jobs --------------------------------------------------------------------------
    def post_job(self, *, spec_hash: bytes, budget: int, reward_per_unit: int, max_units: int, coordinator: str,
                 challenge_window: int, deadline: int, approve: bool = True) -> tuple[int, "TxResult"]:
        """Escrow `budget` for a new job; returns (jobId from the JobPosted event, tx)."""
        self._approve(budget, approve)
        tx = self.transact("postJob", spec_hash, budget, reward_per_unit, max_units, coordinator,
                           challenge_window, deadline)
        return int(tx.event("JobPosted").args["jobId"]), tx

    def top_up(self, job_id: int, amount: int, *, approve: bool = True) -> "TxResult":
        self._approve(amount, approve)
        return self.transact("topUp", job_id, amount)

    def complete_job(self, job_id: int) -> "TxResult":
        return self.transact("completeJob", job_id)

    def close_job(self, job_id: int) -> "TxResult":
        return self.transact("closeJob", job_id)

    # -- rounds ------------------------------------------------------------------------
    def commit_round(self, job_id: int, round: int, *, root: bytes, total: int, num_units: int) -> "TxResult":
        return self.transact("commitRound", job_id, round, root, total, num_units)

    def finalize_round(self, job_id: int, round: int) -> "TxResult":
        return self.transact("finalizeRound", job_id, round)

    def claim(self, leaf: RoundLeaf, proof: Sequence[bytes]) -> "TxResult":
        """Pay `leaf.worker` its amount (anyone may send; pays once)."""
        return self.transact("claim", leaf.job_id, leaf.round, leaf.unit, leaf.worker, leaf.amount,
                             leaf.result_hash, list(proof))

    # -- disputes ----------------------------------------------------------------------
    def challenge(self, evidence: Evidence, *, approve: bool = True) -> tuple[int, "TxResult"]:
        """Open a dispute locking the challenge bond; returns (market disputeId, tx)."""
        self._approve(int(self.params()["challengeBond"]), approve)
        tx = self.transact("challenge", evidence.to_abi())
        return int(tx.event("DisputeOpened").args["disputeId"]), tx

    def timeout_dispute(self, dispute_id: int) -> "TxResult":
        return self.transact("timeoutDispute", dispute_id)

    def withdraw_payout(self) -> "TxResult":
        return self.transact("withdrawPayout")

    def set_arbiter(self, arbiter: str) -> "TxResult":
        return self.transact("setArbiter", arbiter)

    # -- views -------------------------------------------------------------------------
    def token_address(self) -> str:
        return str(self.call("token"))

    def arbiter_address(self) -> str:
        return str(self.call("arbiter"))

    def params(self) -> dict[str, Any]:
        return dict(self.call("params"))

    def min_stake(self, role: Role | int) -> int:
        return int(self.call("minStake", int(role)))

    def get_stake(self, account: str, role: Role | int) -> dict[str, Any]:
        return dict(self.call("getStake", account, int(role)))

    def get_job(self, job_id: int) -> dict[str, Any]:
        return dict(self.call("getJob", job_id))

    def get_round(self, job_id: int, round: int) -> dict[str, Any]:
        return dict(self.call("getRound", job_id, round))

    def get_dispute(self, dispute_id: int) -> dict[str, Any]:
        return dict(self.call("getDispute", dispute_id))

    def dispute_id_of(self, arbiter_dispute_id: int) -> int:
        return int(self.call("disputeIdOf", arbiter_dispute_id))

    def leaf_status(self, leaf_hash: bytes) -> LeafStatus:
        return LeafStatus(self.call("leafStatus", leaf_hash))

    def is_leaf_claimed(self, leaf_hash: bytes) -> bool:
        return bool(self.call("isLeafClaimed", leaf_hash))

    def job_count(self) -> int:
        return int(self.call("jobCount"))

    def dispute_count(self) -> int:
        return int(self.call("disputeCount"))

    def open_disputes_of(self, account: str) -> int:
        return int(self.call("openDisputesOf", account))

    def payout_of(self, account: str) -> int:
        return int(self.call("payoutOf", account))

    def verifier_count(self) -> int:
        return int(self.call("verifierCount"))

    def verifiers(self) -> list[str]:
        """The jury pool: verifiers with at least the minimum active stake."""
        return [str(self.call("verifierAt", i)) for i in range(self.verifier_count())]

    def is_eligible_verifier(self, account: str) -> bool:
        return bool(self.call("isEligibleVerifier", account))

    def domain_separator(self) -> bytes:
        return bytes(self.call("domainSeparator"))

    def hash_work_result(self, result: WorkResult) -> bytes:
        """The on-chain EIP-712 digest (must equal protocol.eip712.work_result_digest)."""
        return bytes(self.call("hashWorkResult", result.job_id, result.round, result.unit, result.input_hash,
                               result.output_hash, result.trace_root))

    def hash_round_leaf(self, leaf: RoundLeaf) -> bytes:
        return bytes(self.call("hashRoundLeaf", leaf.to_abi()))

    def hash_trace_leaf(self, leaf: TraceLeaf) -> bytes:
        return bytes(self.call("hashTraceLeaf", leaf.to_abi()))
