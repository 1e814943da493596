"""Typed facade over `JuryArbiter` (IJuryArbiter): commit-reveal voting by staked verifiers.

Timeline per dispute (seconds): commits while now < commitDeadline; reveals from the
commit deadline (earlier once every juror committed) until revealDeadline; `resolve` by
anyone afterwards (or once all revealed). Choices: 1 = worker was right, 2 = challenger
was right. A juror keeps its salt between commit and reveal: `vote_commitment` computes
the same `keccak256(abi.encode(disputeId, juror, choice, salt))` as the contract.
The arbiter holds the majority jurors' rewards until they call `withdraw_reward`.
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from eth_abi import encode as abi_encode

from protocol.chain.contract import BoundContract
from protocol.chain.types import Ruling
from protocol.hashing import keccak256

if TYPE_CHECKING:
    from protocol.chain.client import ChainClient, TxResult


def vote_commitment(dispute_id: int, juror: str, choice: int, salt: bytes) -> bytes:
    """keccak256(abi.encode(uint256 disputeId, address juror, uint8 choice, bytes32 salt))."""
    return keccak256(abi_encode(["uint256", "address", "uint8", "bytes32"], [dispute_id, juror, int(choice), salt]))


def new_salt() -> bytes:
    """32 random bytes; a guessable salt would let others read a vote before the reveal."""
    return secrets.token_bytes(32)


class JuryApi(BoundContract):
    def __init__(self, client: "ChainClient", address: str) -> None:
        super().__init__(client, "JuryArbiter", address)

    # -- voting ------------------------------------------------------------------------
    def commit_vote(self, dispute_id: int, choice: Ruling | int, salt: bytes) -> "TxResult":
        """Commit `choice` for arbiter dispute `dispute_id`; keep `salt` to reveal later."""
        return self.transact("commitVote", dispute_id, vote_commitment(dispute_id, self.client.address, choice, salt))

    def reveal_vote(self, dispute_id: int, choice: Ruling | int, salt: bytes) -> "TxResult":
        return self.transact("revealVote", dispute_id, int(choice), salt)

    def resolve(self, dispute_id: int) -> "TxResult":
        """Tally and pass the ruling to the market (anyone, once the timeline allows)."""
        return self.transact("resolve", dispute_id)

    def withdraw_reward(self) -> "TxResult":
        return self.transact("withdrawReward")

    # -- views -------------------------------------------------------------------------
    def market_address(self) -> str:
        return str(self.call("market"))

    def params(self) -> dict[str, Any]:
        return dict(self.call("params"))

    def dispute_count(self) -> int:
        return int(self.call("disputeCount"))

    def get_dispute(self, dispute_id: int) -> dict[str, Any]:
        return dict(self.call("getDispute", dispute_id))

    def jurors_of(self, dispute_id: int) -> list[str]:
        return list(self.call("jurorsOf", dispute_id))

    def vote_of(self, dispute_id: int, juror: str) -> dict[str, Any]:
        return dict(self.call("voteOf", dispute_id, juror))

    def reward_of(self, juror: str) -> int:
        return int(self.call("rewardOf", juror))

    def current_ruling(self, dispute_id: int) -> Ruling:
        return Ruling(self.call("currentRuling", dispute_id))

    def dispute_status(self, dispute_id: int) -> int:
        """IArbitrator.DisputeStatus: 0 Waiting, 1 Appealable (unused), 2 Solved."""
        return int(self.call("disputeStatus", dispute_id))
