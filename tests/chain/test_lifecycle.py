"""Full job lifecycle on a real anvil: post, stake, commit, challenge, jury, rule, claim, close.

Both dispute outcomes; token conservation to the wei across every account, the market and
the arbiter; and the market's balance equals what its views say it owes at each stage.
"""
from __future__ import annotations

from typing import Any

import pytest

from protocol.chain import ContractRevert, LeafStatus, Role, Ruling, error_class
from protocol.chain.jury import new_salt
from protocol.chain.types import DisputeStatus, JobStatus, RoundStatus


def _jury_votes(a: Any, arbiter_dispute_id: int, choices: list[int]) -> list[str]:
    """Each drawn juror commits then reveals its choice; anyone resolves once all revealed."""
    jurors = a.owner.jury.jurors_of(arbiter_dispute_id)
    assert len(jurors) == 3  # jury size 3 from 4 eligible verifiers (challenger excluded)
    salts = {}
    for juror, choice in zip(jurors, choices):
        salts[juror] = new_salt()
        a.by_address[juror].jury.commit_vote(arbiter_dispute_id, choice, salts[juror])
    for juror, choice in zip(jurors, choices):  # reveals open early once every juror committed
        a.by_address[juror].jury.reveal_vote(arbiter_dispute_id, choice, salts[juror])
    a.owner.jury.resolve(arbiter_dispute_id)
    return jurors


@pytest.mark.parametrize("outcome", ["worker_loses", "challenger_loses"])
def test_full_lifecycle_with_dispute(actors: Any, helpers: Any, outcome: str) -> None:
    a, h, ONE = actors, helpers, helpers.ONE
    m = a.owner.market
    supply_before = h.total_tokens(a)

    # Window (100 s) shorter than the jury's commit period (120 s): the round can be past its
    # window while the dispute is still being voted on.
    job = h.post_job(a, budget=1000 * ONE, reward=100 * ONE, window=100)
    h.stake_everyone(a)
    rnd = h.commit_round(a, job, amounts=(100 * ONE, 90 * ONE, 100 * ONE))
    assert m.get_job(job)["escrow"] == 710 * ONE
    assert m.get_round(job, 0)["status"] == RoundStatus.COMMITTED
    h.assert_books_balance(a, [(job, 0)], [job])

    # Verifier 0 challenges unit 2 (worker 0) at trace step 2, with leaves 1 and 2 and their proofs.
    challenger = a.verifiers[0]
    disputed = rnd.units[2]
    worker = a.by_address[disputed.leaf.worker]
    stake_before = m.get_stake(worker.address, Role.WORKER)["active"]
    bond = m.params()["challengeBond"]
    dispute_id, tx = challenger.market.challenge(rnd.evidence(2, step=2))
    opened = tx.event("DisputeOpened").args
    assert opened["worker"] == worker.address and opened["challenger"] == challenger.address
    assert tx.event("ChallengeEvidence").args["evidence"]["step"] == 2
    assert m.leaf_status(disputed.leaf.hash()) == LeafStatus.CHALLENGED
    h.assert_books_balance(a, [(job, 0)], [job])
    with pytest.raises(error_class("MarketChallengeWindowOpen")):
        m.finalize_round(job, 0)
    a.advance(101)
    with pytest.raises(error_class("MarketRoundHasOpenDisputes")) as ei:
        m.finalize_round(job, 0)
    assert ei.value.args_dict["openDisputes"] == 1

    arb_id = opened["arbiterDisputeId"]
    if outcome == "worker_loses":
        jurors = _jury_votes(a, arb_id, [Ruling.CHALLENGER_RIGHT] * 3)
    else:  # 2 to 1 for the worker: the minority juror earns nothing
        jurors = _jury_votes(a, arb_id, [Ruling.WORKER_RIGHT, Ruling.CHALLENGER_RIGHT, Ruling.WORKER_RIGHT])
    d = m.get_dispute(dispute_id)
    assert d["status"] == DisputeStatus.RULED
    resolved = next(e for e in m.events("DisputeResolved") if e.args["disputeId"] == dispute_id).args
    share_bps, slash_bps = m.params()["jurorShareBps"], m.params()["slashBps"]
    rewards = {j: a.owner.jury.reward_of(j) for j in jurors}

    if outcome == "worker_loses":
        slashed = stake_before * slash_bps // 10_000
        juror_share = slashed * share_bps // 10_000
        assert d["ruling"] == Ruling.CHALLENGER_RIGHT
        assert m.leaf_status(disputed.leaf.hash()) == LeafStatus.REVOKED
        assert m.get_stake(worker.address, Role.WORKER)["active"] == stake_before - slashed
        assert resolved["slashed"] == slashed and resolved["returnedToEscrow"] == disputed.leaf.amount
        assert m.payout_of(challenger.address) == bond + slashed - juror_share
        assert m.payout_of(worker.address) == 0
        assert m.get_job(job)["escrow"] == 710 * ONE + disputed.leaf.amount  # unpaid leaf back in escrow
        assert sum(rewards.values()) == juror_share and all(r > 0 for r in rewards.values())
    else:
        juror_share = bond * share_bps // 10_000
        assert d["ruling"] == Ruling.WORKER_RIGHT
        assert m.leaf_status(disputed.leaf.hash()) == LeafStatus.UPHELD
        assert m.get_stake(worker.address, Role.WORKER)["active"] == stake_before
        assert m.payout_of(worker.address) == bond - juror_share
        assert m.payout_of(challenger.address) == 0
        assert rewards[jurors[1]] == 0 and rewards[jurors[0]] + rewards[jurors[2]] == juror_share
    h.assert_books_balance(a, [(job, 0)], [job])

    # Settle: finalize, claim every payable leaf (anyone may send a claim), pay out, close.
    m.finalize_round(job, 0)
    assert m.get_round(job, 0)["status"] == RoundStatus.FINALIZED
    paid_units = [0, 1] if outcome == "worker_loses" else [0, 1, 2]
    for i in paid_units:
        u = rnd.units[i]
        before = a.owner.token.balance_of(u.leaf.worker)
        a.coordinator.market.claim(u.leaf, rnd.proof(i))
        assert a.owner.token.balance_of(u.leaf.worker) == before + u.leaf.amount
        assert m.is_leaf_claimed(u.leaf.hash())
    if outcome == "worker_loses":
        with pytest.raises(error_class("MarketLeafNotClaimable")) as ei:
            worker.market.claim(disputed.leaf, rnd.proof(2))
        assert ei.value.args_dict["status"] == LeafStatus.REVOKED
    assert m.get_round(job, 0)["pending"] == 0
    for c in (challenger, worker):
        if m.payout_of(c.address):
            c.market.withdraw_payout()
    for j, r in rewards.items():
        if r:
            before = a.owner.token.balance_of(j)
            a.by_address[j].jury.withdraw_reward()
            assert a.owner.token.balance_of(j) == before + r
    h.assert_books_balance(a, [(job, 0)], [job])

    a.coordinator.market.complete_job(job)
    escrow = m.get_job(job)["escrow"]
    owner_before = a.owner.token.balance_of(a.owner.address)
    close = a.owner.market.close_job(job)
    assert close.event("JobClosed").args["refund"] == escrow
    assert a.owner.token.balance_of(a.owner.address) == owner_before + escrow
    assert m.get_job(job)["status"] == JobStatus.CLOSED
    h.assert_books_balance(a, [(job, 0)], [job])

    # Only stakes remain in the market; nothing was created or lost anywhere.
    assert h.total_tokens(a) == supply_before


def test_claim_twice_and_unstake_flow(actors: Any, helpers: Any) -> None:
    a, h, ONE = actors, helpers, helpers.ONE
    m = a.owner.market
    job = h.post_job(a)
    h.stake_everyone(a)
    rnd = h.commit_round(a, job, amounts=(100 * ONE,))  # one leaf: root = leaf, empty proof
    assert rnd.proof(0) == []
    a.advance(601)
    a.owner.market.finalize_round(job, 0)
    a.workers[1].market.claim(rnd.units[0].leaf, [])
    with pytest.raises(error_class("MarketLeafNotClaimable")) as ei:
        a.workers[1].market.claim(rnd.units[0].leaf, [])
    assert isinstance(ei.value, ContractRevert) and ei.value.args_dict["status"] == LeafStatus.CLAIMED
    assert "MarketLeafNotClaimable(leaf=0x" in str(ei.value)

    w = a.workers[0]
    staked = m.get_stake(w.address, Role.WORKER)["active"]
    tx = w.market.request_unstake(Role.WORKER, staked)
    unlock = tx.event("UnstakeRequested").args["unlockAt"]
    with pytest.raises(error_class("MarketStakeLocked")) as ei2:
        w.market.withdraw_stake(Role.WORKER)
    assert ei2.value.args_dict["unlockAt"] == unlock and "unbonding period" in str(ei2.value)
    a.advance(m.params()["unbondingPeriod"])
    before = a.owner.token.balance_of(w.address)
    w.market.withdraw_stake(Role.WORKER)
    assert a.owner.token.balance_of(w.address) == before + staked
    h.assert_books_balance(a, [(job, 0)], [job])


def test_unruled_dispute_times_out_as_no_decision(actors: Any, helpers: Any) -> None:
    """Jurors never vote: after disputeTimeout anyone closes it as ruling 0 (bond back, leaf payable)."""
    a, h, ONE = actors, helpers, helpers.ONE
    m = a.owner.market
    supply_before = h.total_tokens(a)
    job = h.post_job(a)
    h.stake_everyone(a)
    rnd = h.commit_round(a, job, amounts=(40 * ONE, 60 * ONE))
    challenger = a.verifiers[1]
    dispute_id, tx = challenger.market.challenge(rnd.evidence(1, step=0))  # step 0: no previous leaf
    arb_id = tx.event("DisputeOpened").args["arbiterDisputeId"]
    with pytest.raises(error_class("MarketDisputeNotTimedOut")):
        a.deployer.market.timeout_dispute(dispute_id)
    a.advance(m.params()["disputeTimeout"])
    a.deployer.market.timeout_dispute(dispute_id)
    d = m.get_dispute(dispute_id)
    assert d["status"] == DisputeStatus.TIMED_OUT and d["ruling"] == Ruling.NO_DECISION
    assert m.payout_of(challenger.address) == d["bond"]
    assert m.leaf_status(rnd.units[1].leaf.hash()) == LeafStatus.UPHELD
    # The jury can no longer rule: the market's own error comes back through the arbiter.
    with pytest.raises(error_class("MarketDisputeNotOpen")):
        a.owner.jury.resolve(arb_id)
    m.finalize_round(job, 0)
    for i in range(2):
        m.claim(rnd.units[i].leaf, rnd.proof(i))
    challenger.market.withdraw_payout()
    h.assert_books_balance(a, [(job, 0)], [job])
    assert h.total_tokens(a) == supply_before
