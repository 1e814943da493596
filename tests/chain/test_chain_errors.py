"""Reverts on a real chain come back as typed exceptions naming the error and its arguments.

Covers the three places a revert can surface: gas estimation (normal sends), eth_call
(simulations and views), and a mined transaction (gas given, estimation skipped).
"""
from __future__ import annotations

from typing import Any

import pytest

from protocol.chain import ContractRevert, Role, TransactionReverted, error_class
from protocol.chain.errors import ChainError


def test_stake_too_low_to_challenge(actors: Any, helpers: Any) -> None:
    a, h = actors, helpers
    job = h.post_job(a)
    for w in a.workers:
        w.market.stake(Role.WORKER, a.owner.market.min_stake(Role.WORKER))
    rnd = h.commit_round(a, job)
    outsider = a.verifiers[4]  # never staked as a verifier
    with pytest.raises(error_class("MarketInsufficientStake")) as ei:
        outsider.market.challenge(rnd.evidence(0, step=0))
    e = ei.value
    needed = a.owner.market.min_stake(Role.VERIFIER)
    assert e.args_dict == {"account": outsider.address, "stake": 0, "needed": needed}
    assert str(e).startswith(f"MarketInsufficientStake(account={outsider.address}, stake=0, needed={needed})")
    assert "stake more" in str(e) and e.tx_hash is None  # caught at estimation: no gas spent
    assert isinstance(e, ContractRevert) and isinstance(e, RuntimeError)


def test_challenge_after_window(actors: Any, helpers: Any) -> None:
    a, h = actors, helpers
    job = h.post_job(a, window=600)
    h.stake_everyone(a)
    rnd = h.commit_round(a, job)
    end = a.owner.market.get_round(job, 0)["challengeEnd"]
    a.advance(601)
    with pytest.raises(error_class("MarketChallengeWindowClosed")) as ei:
        a.verifiers[0].market.challenge(rnd.evidence(1, step=3))
    assert ei.value.args_dict["challengeEnd"] == end and ei.value.args_dict["nowTime"] >= end
    assert "MarketChallengeWindowClosed(jobId=" in str(ei.value) and "window has passed" in str(ei.value)


def test_commit_by_non_coordinator(actors: Any, helpers: Any) -> None:
    a, h = actors, helpers
    job = h.post_job(a)
    intruder = a.workers[0]
    with pytest.raises(error_class("MarketNotCoordinator")) as ei:
        intruder.market.commit_round(job, 0, root=b"\x01" * 32, total=1, num_units=1)
    assert ei.value.args_dict == {"jobId": job, "caller": intruder.address, "coordinator": a.coordinator.address}
    assert "coordinator" in str(ei.value)


def test_missing_allowance_is_an_oz_error(actors: Any) -> None:
    v = actors.verifiers[0]
    with pytest.raises(error_class("ERC20InsufficientAllowance")) as ei:
        v.market.stake(Role.VERIFIER, 5, approve=False)
    assert ei.value.args_dict == {"spender": v.market.address, "allowance": 0, "needed": 5}


def test_revert_in_eth_call_and_in_mined_transaction(actors: Any, helpers: Any) -> None:
    a, h = actors, helpers
    job = h.post_job(a)
    m = a.workers[0].market
    # eth_call (simulation of a state-changing function) decodes the same way.
    with pytest.raises(error_class("MarketNotCoordinator")):
        m.call("completeJob", job)
    # With gas given, estimation is skipped: the transaction is mined, fails, and is replayed.
    with pytest.raises(error_class("MarketNotCoordinator")) as ei:
        a.workers[0].send(m.address, m.encode("completeJob", job), gas=200_000)
    assert ei.value.tx_hash is not None and ei.value.tx_hash.startswith("0x")
    rc = a.owner.w3.eth.get_transaction_receipt(ei.value.tx_hash)
    assert rc["status"] == 0
    # An unknown job id is a typed error from a view too.
    with pytest.raises(error_class("MarketUnknownJob")) as ei2:
        a.coordinator.market.complete_job(999)
    assert ei2.value.args_dict == {"jobId": 999}
    assert issubclass(error_class("MarketUnknownJob"), TransactionReverted)


def test_event_and_client_guards(actors: Any, helpers: Any) -> None:
    a, h = actors, helpers
    job = h.post_job(a)
    posted = a.owner.market.events("JobPosted")
    assert [e.args["jobId"] for e in posted] == [job] and posted[0].args["owner"] == a.owner.address
    # Chunked log queries (public RPCs cap eth_getLogs ranges) see the same events.
    all_events = a.owner.get_events(a.owner.market.address)
    assert a.owner.get_events(a.owner.market.address, chunk=2) == all_events and len(all_events) > 1
    tx = a.owner.market.top_up(job, 5)
    with pytest.raises(ChainError, match="emitted no DisputeOpened event"):
        tx.event("DisputeOpened")
    from protocol.chain import ChainClient

    reader = ChainClient(a.net.rpc_url, deployment=a.net.deployment)
    assert reader.market.get_job(job)["escrow"] == 1000 * helpers.ONE + 5
    with pytest.raises(ChainError, match="no signing key"):
        reader.market.top_up(job, 1)
