"""Solidity and Python agree on every byte: EIP-712 digests, leaf hashes, Merkle proofs (claims)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from protocol.chain import RoundLeaf, TraceLeaf, error_class
from protocol.eip712 import WorkResult, domain_separator, work_result_digest
from protocol.hashing import from_hex
from protocol.vectors.generate import VECTOR_DIR


def test_eip712_digest_matches_market(actors: Any) -> None:
    m = actors.owner.market
    assert m.domain_separator() == domain_separator(actors.owner.chain_id, m.address)
    for job, rnd, unit in [(1, 0, 0), (7, 3, 5), (2**64 + 1, 2**40, 2**200), (2**256 - 1, 0, 1)]:
        r = WorkResult(job_id=job, round=rnd, unit=unit, input_hash=bytes([unit % 256]) * 32,
                       output_hash=b"\x02" * 32, trace_root=b"\x03" * 32)
        assert m.hash_work_result(r) == work_result_digest(r, chain_id=actors.owner.chain_id, verifying_contract=m.address)


def test_leaf_hashes_match_market_on_committed_vectors(actors: Any) -> None:
    m = actors.owner.market
    vec = json.loads((VECTOR_DIR / "merkle.json").read_text())
    for tree in vec["roundTrees"]:
        for leaf, h in zip(tree["leaves"], tree["leafHashes"]):
            rl = RoundLeaf(job_id=leaf["jobId"], round=leaf["round"], unit=leaf["unit"], worker=leaf["worker"],
                           amount=int(leaf["amount"]), result_hash=from_hex(leaf["resultHash"]))
            assert rl.hash() == from_hex(h) == m.hash_round_leaf(rl)
    for tree in vec["traceTrees"]:
        for leaf, h in zip(tree["leaves"], tree["leafHashes"]):
            tl = TraceLeaf(step=leaf["step"], batch_digest=from_hex(leaf["batchDigest"]),
                           state_digest=from_hex(leaf["stateDigest"]), loss_bits=int(leaf["lossBits"]))
            assert tl.hash() == from_hex(h) == m.hash_trace_leaf(tl)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_python_merkle_proofs_claim_on_chain(actors: Any, helpers: Any, size: int) -> None:
    a, h, ONE = actors, helpers, helpers.ONE
    job = h.post_job(a, budget=10_000 * ONE, max_units=size, reward=100 * ONE)
    h.stake_everyone(a)
    amounts = tuple(ONE * (i + 1) + 2**64 + i for i in range(size))  # odd amounts > 2^64
    rnd = h.commit_round(a, job, round=2**70, amounts=amounts)  # any round id, full uint256 range
    a.advance(601)
    a.owner.market.finalize_round(job, rnd.round)
    tok = a.owner.token
    for i in reversed(range(size)):  # order does not matter
        u = rnd.units[i]
        before = tok.balance_of(u.leaf.worker)
        a.deployer.market.claim(u.leaf, rnd.proof(i))
        assert tok.balance_of(u.leaf.worker) == before + u.leaf.amount
    assert a.owner.market.get_round(job, rnd.round)["pending"] == 0
    h.assert_books_balance(a, [(job, rnd.round)], [job])


def test_wrong_proof_and_forged_evidence_are_rejected(actors: Any, helpers: Any) -> None:
    a, h, ONE = actors, helpers, helpers.ONE
    job = h.post_job(a)
    h.stake_everyone(a)
    rnd = h.commit_round(a, job, amounts=(10 * ONE, 20 * ONE, 30 * ONE))
    ch = a.verifiers[0].market
    # A proof for unit 0 does not prove unit 1.
    with pytest.raises(error_class("MarketInvalidProof")) as ei:
        ch.challenge(replace(rnd.evidence(1, step=1), leaf_proof=rnd.proof(0)))
    assert ei.value.args_dict["root"] == rnd.tree.root
    # A signature by another key does not recover to the leaf's worker.
    ev = rnd.evidence(0, step=1)
    forged = replace(ev, signature=rnd.units[1].signature)
    with pytest.raises(error_class("MarketInvalidSignature")) as ei2:
        ch.challenge(forged)
    assert ei2.value.args_dict["worker"] == rnd.units[0].leaf.worker
    # Trace leaf 2 with leaf 1's proof does not verify against the signed trace root.
    bad_trace = replace(ev, cur_proof=rnd.units[0].trace_tree.proof(2))
    with pytest.raises(error_class("MarketInvalidTraceProof")) as ei3:
        ch.challenge(bad_trace)
    assert ei3.value.args_dict["traceRoot"] == rnd.units[0].result.trace_root
