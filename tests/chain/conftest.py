"""One real anvil per test session with the market deployed; each test runs inside an EVM snapshot.

`net` starts anvil on a free port (stopped by PID at session end) and deploys through the
same deploy code users run. `chain` snapshots before the test and reverts after, so tests
never see each other's state. Clients are created per test: their local nonce counters
would be stale after a revert.

Roles over anvil's dev accounts: 0 deployer, 1 model owner, 2 coordinator, 3-4 workers,
5-9 verifiers (5 verifiers: a challenger plus a jury of 3 drawn from the other 4).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from deploy.deploy import DeployConfig
from deploy.devnet import LocalMarket, start_local_market
from protocol.chain import ChainClient, Evidence, Role, RoundLeaf, TraceLeaf
from protocol.chain.types import DisputeStatus
from protocol.eip712 import WorkResult, sign_work_result, work_result_digest
from protocol.hashing import keccak256
from protocol.merkle import MerkleTree

ONE = 10**18  # TestToken has 18 decimals


@pytest.fixture(scope="session")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with start_local_market(config=DeployConfig.local(), save_dir=tmp_path_factory.mktemp("deployments")) as n:
        yield n


@pytest.fixture
def chain(net: LocalMarket) -> Iterator[LocalMarket]:
    snap = net.chain.snapshot()
    try:
        yield net
    finally:
        net.chain.revert(snap)


@dataclass
class Actors:
    net: LocalMarket
    deployer: ChainClient
    owner: ChainClient
    coordinator: ChainClient
    workers: list[ChainClient]
    verifiers: list[ChainClient]
    by_address: dict[str, ChainClient] = field(default_factory=dict)

    def all(self) -> list[ChainClient]:
        return [self.deployer, self.owner, self.coordinator, *self.workers, *self.verifiers]

    def __post_init__(self) -> None:
        self.by_address = {c.address: c for c in self.all()}

    def advance(self, seconds: int) -> None:
        self.net.chain.increase_time(seconds)

    def now(self) -> int:
        return self.owner.timestamp()


@pytest.fixture
def actors(chain: LocalMarket) -> Actors:
    c = [chain.client(i) for i in range(10)]
    return Actors(chain, c[0], c[1], c[2], c[3:5], c[5:10])


@dataclass
class Unit:
    leaf: RoundLeaf
    result: WorkResult
    signature: bytes
    trace: list[TraceLeaf]
    trace_tree: MerkleTree


@dataclass
class CommittedRound:
    job_id: int
    round: int
    units: list[Unit]
    tree: MerkleTree

    def proof(self, unit: int) -> list[bytes]:
        return self.tree.proof(unit)

    def evidence(self, unit: int, step: int) -> Evidence:
        u = self.units[unit]
        prev = u.trace[step - 1] if step > 0 else None
        return Evidence(leaf=u.leaf, leaf_proof=self.proof(unit), result=u.result, signature=u.signature, step=step,
                        cur=u.trace[step], cur_proof=u.trace_tree.proof(step), prev=prev,
                        prev_proof=u.trace_tree.proof(step - 1) if step > 0 else ())


def loss_bits(x: float) -> int:
    """float32 loss widened to float64, as its bit pattern (docs/protocol.md "Trace leaf")."""
    f32 = struct.unpack("<f", struct.pack("<f", x))[0]
    return struct.unpack("<Q", struct.pack("<d", f32))[0]


def make_unit(*, job_id: int, round: int, unit: int, worker: ChainClient, amount: int, steps: int,
              market: str) -> Unit:
    trace = [TraceLeaf(step=s, batch_digest=keccak256(f"batch.{job_id}.{round}.{unit}.{s}".encode()),
                       state_digest=keccak256(f"state.{job_id}.{round}.{unit}.{s}".encode()),
                       loss_bits=loss_bits(5.5 / (1 + s)))
             for s in range(steps)]
    ttree = MerkleTree.build([t.hash() for t in trace])
    result = WorkResult(job_id=job_id, round=round, unit=unit, input_hash=keccak256(f"in.{unit}".encode()),
                        output_hash=keccak256(f"out.{unit}".encode()), trace_root=ttree.root)
    chain_id = worker.chain_id
    sig = sign_work_result(worker.account, result, chain_id=chain_id, verifying_contract=market)  # type: ignore[arg-type]
    digest = work_result_digest(result, chain_id=chain_id, verifying_contract=market)
    leaf = RoundLeaf(job_id=job_id, round=round, unit=unit, worker=worker.address, amount=amount, result_hash=digest)
    return Unit(leaf, result, sig, trace, ttree)


def post_job(a: Actors, *, budget: int = 1000 * ONE, reward: int = 100 * ONE, max_units: int = 10,
             window: int = 600) -> int:
    job_id, _ = a.owner.market.post_job(spec_hash=keccak256(b"spec"), budget=budget, reward_per_unit=reward,
                                        max_units=max_units, coordinator=a.coordinator.address,
                                        challenge_window=window, deadline=a.now() + 86_400)
    return job_id


def stake_everyone(a: Actors) -> None:
    need_w = a.owner.market.min_stake(Role.WORKER)
    need_v = a.owner.market.min_stake(Role.VERIFIER)
    for w in a.workers:
        w.market.stake(Role.WORKER, need_w)
    for v in a.verifiers:
        v.market.stake(Role.VERIFIER, need_v)


def commit_round(a: Actors, job_id: int, *, round: int = 0, amounts: tuple[int, ...] = (100 * ONE,) * 3,
                 steps: int = 4) -> CommittedRound:
    """Units alternate between the two workers; each signs its WorkResult; the coordinator commits the root."""
    market = a.owner.market.address
    units = [make_unit(job_id=job_id, round=round, unit=i, worker=a.workers[i % 2], amount=amt, steps=steps,
                       market=market) for i, amt in enumerate(amounts)]
    tree = MerkleTree.build([u.leaf.hash() for u in units])
    a.coordinator.market.commit_round(job_id, round, root=tree.root, total=sum(amounts), num_units=len(units))
    return CommittedRound(job_id, round, units, tree)


def token_holders(a: Actors) -> list[str]:
    dep = a.net.deployment
    return [c.address for c in a.all()] + [dep.address("Market"), dep.address("JuryArbiter")]


def total_tokens(a: Actors) -> int:
    tok = a.owner.token
    return sum(tok.balance_of(x) for x in token_holders(a))


def market_liabilities(a: Actors, rounds: list[tuple[int, int]], job_ids: list[int]) -> int:
    """escrows + round pending + stakes (active + unbonding) + open bonds + credited payouts, from views."""
    m = a.owner.market
    total = sum(m.get_job(j)["escrow"] for j in job_ids)
    total += sum(m.get_round(j, r)["pending"] for j, r in rounds)
    for c in a.all():
        for role in (Role.WORKER, Role.VERIFIER):
            s = m.get_stake(c.address, role)
            total += s["active"] + s["unbonding"]
        total += m.payout_of(c.address)
    for d in range(1, m.dispute_count() + 1):
        dv = m.get_dispute(d)
        if dv["status"] == DisputeStatus.OPEN:
            total += dv["bond"]
    return total


def assert_books_balance(a: Actors, rounds: list[tuple[int, int]], job_ids: list[int]) -> None:
    dep = a.net.deployment
    tok = a.owner.token
    assert tok.balance_of(dep.address("Market")) == market_liabilities(a, rounds, job_ids)
    jury = a.owner.jury
    assert tok.balance_of(dep.address("JuryArbiter")) == sum(jury.reward_of(c.address) for c in a.all())


@pytest.fixture
def helpers() -> object:
    """The scenario helpers above, for test modules (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(ONE=ONE, post_job=post_job, stake_everyone=stake_everyone, commit_round=commit_round,
                                 total_tokens=total_tokens, assert_books_balance=assert_books_balance,
                                 make_unit=make_unit, loss_bits=loss_bits)


ROOT = Path(__file__).resolve().parents[2]
