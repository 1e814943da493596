"""A worker's earnings per unit, and claiming them (`crowdtrain worker earnings | claim`).

Each unit the worker submitted is one row, its status read from the chain, not from the
coordinator's say-so:

  rejected     the coordinator's intake refused the result (reason shown); never paid
  uncommitted  accepted by the coordinator; its round is not committed on chain yet
  pending      in a committed round whose challenge window is open, or under dispute
  claimable    the round finalized (or its window closed with no open dispute: `claim`
               finalizes it first), the leaf neither claimed nor revoked
  claimed      paid; the claim transaction is shown
  slashed      a dispute ruled against the unit: leaf revoked, stake slashed (tx shown)

Every committed row carries the round root and the commit transaction, so a figure can
be checked against the chain. Amounts are token base units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from protocol.agentkit import transact_due
from protocol.api_client import CoordinatorApi
from protocol.chain import ChainError, ContractRevert
from protocol.chain.client import ChainClient, DecodedEvent, TxResult
from protocol.chain.types import LeafStatus, RoundLeaf, RoundStatus
from protocol.hashing import from_hex, to_hex
from protocol.wire import SettledLeaf


@dataclass(frozen=True)
class EarningRow:
    job_id: int
    round: int
    unit: int
    amount: int
    status: str
    detail: str = ""
    root: str | None = None
    commit_tx: str | None = None
    settle_tx: str | None = None   # the claim, or the slash
    leaf: SettledLeaf | None = None


def _index(events: list[DecodedEvent], me: str) -> tuple[dict[str, str], dict[str, int], dict[int, str]]:
    """(leaf hash -> claim tx, leaf hash -> dispute id, dispute id -> slash tx of `me`)."""
    claims, disputes, slashes = {}, {}, {}
    for e in events:
        if e.name == "Claimed" and e.args["worker"] == me:
            claims[to_hex(bytes(e.args["leaf"]))] = e.tx_hash
        elif e.name == "DisputeOpened" and e.args["worker"] == me:
            disputes[to_hex(bytes(e.args["leaf"]))] = int(e.args["disputeId"])
        elif e.name == "Slashed" and e.args["account"] == me:
            slashes[int(e.args["disputeId"])] = e.tx_hash
    return claims, disputes, slashes


def earnings(api: CoordinatorApi, chain: ChainClient, worker: str, *, jobs: list[int] | None = None) -> list[EarningRow]:
    m = chain.market
    claims, disputes, slashes = _index(m.events(None), worker)
    now = max(chain.timestamp(), int(time.time()))
    rows: list[EarningRow] = []
    job_ids = jobs or [j.job_id for j in api.list_jobs()]
    for job_id in job_ids:
        reward = int(m.get_job(job_id)["rewardPerUnit"])
        for r in api.rounds(job_id):
            mine = {}
            for u in api.units(job_id, r.round):
                for res in api.results(u.unit_id):
                    if res.worker != worker:
                        continue
                    if res.verdict == "rejected":
                        rows.append(EarningRow(job_id, r.round, u.unit, 0, "rejected", res.reason))
                    else:
                        mine[u.unit] = res
            if not mine:
                continue
            if r.committed_root is None:
                rows += [EarningRow(job_id, r.round, unit, reward, "uncommitted", "accepted; round not committed yet")
                         for unit in sorted(mine)]
                continue
            settled = api.settlement(job_id, r.round)
            rv = m.get_round(job_id, r.round)
            for sl in settled.leaves:
                if sl.worker != worker:
                    continue
                rows.append(_row(job_id, r.round, sl, settled.root, settled.commit_tx, m.leaf_status(from_hex(sl.leaf)),
                                 rv, now, claims, disputes, slashes))
    return rows


def _row(job_id: int, round: int, sl: SettledLeaf, root: str, commit_tx: str | None, st: LeafStatus, rv: dict,
         now: int, claims: dict[str, str], disputes: dict[str, int], slashes: dict[int, str]) -> EarningRow:
    base = dict(job_id=job_id, round=round, unit=sl.unit, amount=int(sl.amount), root=root, commit_tx=commit_tx,
                leaf=sl)
    if st == LeafStatus.CLAIMED:
        return EarningRow(**base, status="claimed", settle_tx=claims.get(sl.leaf))
    if st == LeafStatus.REVOKED:
        d = disputes.get(sl.leaf)
        return EarningRow(**base, status="slashed", detail=f"dispute {d} ruled for the challenger",
                          settle_tx=slashes.get(d) if d is not None else None)
    if st == LeafStatus.CHALLENGED:
        return EarningRow(**base, status="pending", detail=f"under dispute {disputes.get(sl.leaf)}")
    if RoundStatus(int(rv["status"])) == RoundStatus.FINALIZED:
        return EarningRow(**base, status="claimable", detail="round finalized")
    end = int(rv["challengeEnd"])
    if now >= end and int(rv["openDisputes"]) == 0:
        return EarningRow(**base, status="claimable", detail="challenge window closed (claim finalizes the round)")
    detail = f"challenge window open until {end} ({max(0, end - now)} s)" if now < end else \
        f"{rv['openDisputes']} open dispute(s) in the round"
    return EarningRow(**base, status="pending", detail=detail)


def claim_all(api: CoordinatorApi, chain: ChainClient, worker: str, *, jobs: list[int] | None = None,
              say: Callable[[str], None] = lambda _m: None) -> list[tuple[EarningRow, TxResult]]:
    """Finalize rounds whose window closed and claim every claimable leaf; returns the claims."""
    m = chain.market
    done = []
    finalized: set[tuple[int, int]] = set()
    not_yet: set[tuple[int, int]] = set()
    for row in earnings(api, chain, worker, jobs=jobs):
        if row.status != "claimable" or row.leaf is None:
            continue
        key = (row.job_id, row.round)
        if key in not_yet:
            continue
        if key not in finalized and RoundStatus(int(m.get_round(*key)["status"])) != RoundStatus.FINALIZED:
            try:
                tx = transact_due(m, "finalizeRound", *key)
                say(f"finalized job {row.job_id} round {row.round} in tx {tx.tx_hash}")
            except ContractRevert as e:
                if e.error_name not in ("MarketChallengeWindowOpen", "MarketRoundHasOpenDisputes"):
                    raise
                say(f"job {row.job_id} round {row.round} cannot be finalized yet ({e}); its units stay pending")
                not_yet.add(key)  # the chain's clock is a little behind ours, or a dispute opened meanwhile
                continue
            except ChainError:
                # someone else (another worker, the coordinator) may have finalized it meanwhile
                if RoundStatus(int(m.get_round(*key)["status"])) != RoundStatus.FINALIZED:
                    raise
        finalized.add(key)
        sl = row.leaf
        leaf = RoundLeaf(job_id=row.job_id, round=row.round, unit=sl.unit, worker=sl.worker, amount=int(sl.amount),
                         result_hash=from_hex(sl.result_hash))
        tx = m.claim(leaf, [from_hex(p) for p in sl.proof])
        say(f"claimed job {row.job_id} round {row.round} unit {row.unit}: {row.amount} base units in tx {tx.tx_hash}")
        done.append((row, tx))
    return done
