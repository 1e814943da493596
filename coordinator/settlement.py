"""Settlement: commit each closed round's Merkle root on chain, finalize it after the
challenge window, complete the job once every round is finalized.

A round's settlement is a row state machine (`rounds.settle_state`):

    NULL --commit--> committing --mined / seen on chain--> committed --finalizeRound--> finalized

Every step starts with a compare-and-set that takes the round's *settle lease*
(`settle_owner` = a random token, `settle_lease_until`): only the process whose UPDATE
changed the row sends a transaction, so processes sharing the database never send a
second commit for a round. A crashed sender's lease expires after `settle_lease_s`; the
next process re-reads the chain before sending anything (the commit may have been mined:
then it only records it). The contract itself refuses a second commit of a round id, so
even a stale process can at worst waste one gas estimation.

Order inside `_commit`: build the tree from the accepted units (unit order, amount = the
job's reward per unit: protocol.merkle.round_leaf) and store the root; read the chain's
round; send `commitRound` and record its hash before waiting for the receipt; on success
mark `committed` (and take the challenge end from the event). A revert is recorded in
`settle_error` (event `round.settle_failed`) and retried after `settle_retry_s`; a revert
that says the round is already committed is reconciled from the chain instead. A commit
mined but never recorded (crash between send and record) is reconciled by the indexer
from its `RoundCommitted` event (coordinator/chain_state.py) or by the next pass.

The key signs locally (protocol.chain); it is never logged or stored.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import and_, func, or_, select, update

from coordinator import crud
from coordinator.context import Context
from coordinator.models import ChainEvent, Job, Result, Round, Unit
from protocol.chain.client import ChainClient
from protocol.chain.errors import ChainError, TransactionReverted
from protocol.chain.market import MarketApi
from protocol.hashing import from_hex, to_hex
from protocol.merkle import MerkleTree, round_leaf

log = logging.getLogger(__name__)
CLOSED = ("complete", "quorum")
NONCE_RETRIES = 4
NONCE_CLASH = ("nonce too low", "nonce too high", "already known", "replacement transaction underpriced")


class SendRejected(ChainError):
    """The node refused a signed transaction (not a revert): nothing is on chain."""


@dataclass(frozen=True)
class LeafRow:
    unit: Unit
    result: Result
    leaf: bytes


def round_leaves(s: Any, *, job: Job, rnd: Round) -> list[LeafRow]:
    """The round's settlement leaves: its accepted units in unit order, each paying the
    job's reward per unit (docs/protocol.md "Round leaf")."""
    amount = int(job.reward_per_unit)
    rows = s.execute(select(Unit, Result).join(Result, Unit.accepted_result_id == Result.id)
                     .where(Unit.round_id == rnd.id, Unit.status == "accepted").order_by(Unit.index)).all()
    return [LeafRow(u, r, round_leaf(job_id=job.id, round=rnd.round, unit=u.index, worker=r.worker, amount=amount,
                                     result_hash=from_hex(r.result_hash))) for u, r in rows]


@dataclass
class SettleReport:
    committed: list[tuple[int, int, str]] = field(default_factory=list)  # (job, round, tx)
    finalized: list[tuple[int, int, str]] = field(default_factory=list)
    completed: list[tuple[int, str]] = field(default_factory=list)  # (job, tx)
    waiting: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Settler:
    """Settles this coordinator's rounds with `client`'s key (`client.address` must be the
    jobs' coordinator on chain). `run_once()` is one pass over everything due."""

    def __init__(self, ctx: Context, client: ChainClient) -> None:
        self.ctx, self.client = ctx, client
        self.market = MarketApi(client, ctx.gateway.market_address)
        self.address = client.address

    # -- the pass --------------------------------------------------------------------------
    def run_once(self) -> SettleReport:
        rep = SettleReport()
        for job_id, rnd in self._due("commit"):
            self._guard(rep, f"commit job {job_id} round {rnd}", lambda: self._commit(rep, job_id, rnd))
        for job_id, rnd in self._due("finalize"):
            self._guard(rep, f"finalize job {job_id} round {rnd}", lambda: self._finalize(rep, job_id, rnd))
        for job_id in self._jobs_to_complete():
            self._guard(rep, f"complete job {job_id}", lambda: self._complete(rep, job_id))
        return rep

    def _guard(self, rep: SettleReport, what: str, fn: Callable[[], None]) -> None:
        from coordinator.indexer import TRANSIENT

        try:
            fn()
        except TRANSIENT as e:  # RPC down, database hiccup: the next pass retries
            rep.errors.append(f"{what}: {e}")
            log.warning("settlement: %s: %s", what, e)

    def _due(self, step: str) -> list[tuple[int, int]]:
        now = self.ctx.now()
        free = or_(Round.settle_lease_until.is_(None), Round.settle_lease_until < now)
        if step == "commit":  # only an open chain job takes commits (finalizing needs no open job)
            cond = and_(Round.status.in_(CLOSED), Job.chain_status == "open",
                        or_(Round.settle_state.is_(None), and_(Round.settle_state == "committing", free)))
        else:
            cond = and_(Round.settle_state == "committed", free)
        with self.ctx.sessions() as s:
            return [(j, r) for j, r in s.execute(select(Round.job_id, Round.round).join(Job, Job.id == Round.job_id)
                                                 .where(cond, Job.coordinator == self.address)
                                                 .order_by(Round.job_id, Round.round))]

    def _take(self, job_id: int, round: int, *, state: str | None, to: str) -> tuple[str, Round, Job] | None:
        """Compare-and-set: take the round's settle lease; None when another process has it."""
        now, token = self.ctx.now(), uuid.uuid4().hex
        free = or_(Round.settle_lease_until.is_(None), Round.settle_lease_until < now)
        current = Round.settle_state.is_(None) if state is None else Round.settle_state == state
        if to == "committing":  # start, or resume after a crash / a failure's retry delay
            current = and_(Round.status.in_(CLOSED), or_(current, Round.settle_state == "committing"))
        with self.ctx.transaction() as tx:
            s = tx.session
            won = s.execute(update(Round).where(Round.job_id == job_id, Round.round == round, current, free)
                            .values(settle_state=to, settle_owner=token,
                                    settle_lease_until=now + self.ctx.settings.settle_lease_s)).rowcount
            if won != 1:
                return None
            rnd, job = crud.get_round(s, job_id=job_id, round=round), crud.get_job(s, job_id=job_id)
            assert rnd is not None and job is not None
        return token, rnd, job

    def _set(self, rid: int, token: str, **values: Any) -> bool:
        """Update the round if this process still holds its lease."""
        with self.ctx.transaction() as tx:
            return tx.session.execute(update(Round).where(Round.id == rid, Round.settle_owner == token)
                                      .values(**values)).rowcount == 1

    def _fail(self, rep: SettleReport, rnd: Round, token: str, message: str) -> None:
        """Record a failure and hand the round back for a retry after `settle_retry_s`."""
        now = self.ctx.now()
        with self.ctx.transaction() as tx:
            s = tx.session
            changed = s.execute(update(Round).where(Round.id == rnd.id, Round.settle_owner == token)
                                .values(settle_error=message, settle_lease_until=now + self.ctx.settings.settle_retry_s))
            if changed.rowcount == 1 and rnd.settle_error != message:
                tx.emit("round.settle_failed", rnd.job_id, {"round": rnd.round, "error": message}, now=now)
        rep.errors.append(f"job {rnd.job_id} round {rnd.round}: {message}")
        # the same failure every retry is logged once (it stays in settle_error and the round's view)
        log.log(logging.WARNING if rnd.settle_error != message else logging.DEBUG,
                "settlement of job %s round %s failed: %s (retrying every %.0f s)", rnd.job_id, rnd.round, message,
                self.ctx.settings.settle_retry_s)

    def _send(self, fn: str, *args: Any) -> str:
        """Sign and send; returns the hash as soon as the node accepted it. A revert at gas
        estimation raises the typed error (nothing was sent). A nonce clash (another process
        sending with the same key) is retried with a fresh nonce; any other refusal by the
        node raises SendRejected."""
        from web3.exceptions import Web3RPCError

        data = self.market.encode(fn, *args)
        for attempt in range(NONCE_RETRIES):
            try:
                hx = self.client.send(self.market.address, data, wait=False)
                assert isinstance(hx, str)
                return hx
            except Web3RPCError as e:  # the client re-reads the nonce on the next send
                text = str(e).lower()
                if attempt + 1 < NONCE_RETRIES and any(k in text for k in NONCE_CLASH):
                    continue
                raise SendRejected(f"the node refused the {fn} transaction: {e}") from e
        raise AssertionError("unreachable")

    def _wait(self, tx_hash: str, fn: str, *args: Any) -> Any:
        replay = {"from": self.address, "to": self.market.address, "data": "0x" + self.market.encode(fn, *args).hex(),
                  "value": 0}
        return self.client.wait(tx_hash, replay=replay)

    # -- commit ------------------------------------------------------------------------------
    def _commit(self, rep: SettleReport, job_id: int, round: int) -> None:
        taken = self._take(job_id, round, state=None, to="committing")
        if taken is None:
            return
        token, rnd, job = taken
        with self.ctx.sessions() as s:
            leaves = round_leaves(s, job=job, rnd=rnd)
        if not leaves:
            return self._fail(rep, rnd, token, "the round closed without an accepted unit: nothing to commit")
        root = to_hex(MerkleTree.build([x.leaf for x in leaves]).root)
        total = int(job.reward_per_unit) * len(leaves)
        if rnd.committed_root is not None and rnd.committed_root.lower() != root:
            return self._fail(rep, rnd, token, f"the accepted units now build root {root}, but {rnd.committed_root} "
                                               "was prepared earlier; the round's records changed after it closed")
        self._set(rnd.id, token, committed_root=root, committed_total=str(total), committed_units=len(leaves))
        view = self.market.get_round(job_id, round)
        if int(view["status"]) != 0:
            return self._reconcile(rep, rnd, token, view, root)
        args = (job_id, round, from_hex(root), total, len(leaves))
        try:
            tx_hash = self._send("commitRound", *args)
            self._set(rnd.id, token, commit_tx=tx_hash)  # recorded before waiting: a crash now is reconciled later
            res = self._wait(tx_hash, "commitRound", *args)
        except (TransactionReverted, SendRejected) as e:  # at estimation or refused (nothing sent), or mined
            view = self.market.get_round(job_id, round)
            if int(view["status"]) != 0:  # another sender got there first (or a retry of ours): record it
                return self._reconcile(rep, rnd, token, view, root)
            return self._fail(rep, rnd, token, f"commitRound failed: {e}")
        end = int(res.event("RoundCommitted").args["challengeEnd"])
        self._mark_committed(rnd, token, tx_hash, end, root, total, len(leaves))
        rep.committed.append((job_id, round, tx_hash))

    def _mark_committed(self, rnd: Round, token: str, tx_hash: str | None, challenge_end: int, root: str, total: int,
                        units: int) -> None:
        now = self.ctx.now()
        with self.ctx.transaction() as tx:
            moved = tx.session.execute(update(Round).where(Round.id == rnd.id, Round.settle_owner == token,
                                                           Round.settle_state == "committing")
                                       .values(settle_state="committed", settle_owner=None, settle_lease_until=None,
                                               settle_error=None, challenge_end=challenge_end,
                                               commit_tx=func.coalesce(Round.commit_tx, tx_hash))).rowcount
            if moved:  # else the indexer recorded it first (and emitted the event)
                tx.emit("round.committed", rnd.job_id, {"round": rnd.round, "root": root, "tx": tx_hash,
                                                        "total": str(total), "units": units}, now=now)
        log.info("job %s round %s committed: root %s, %d units, tx %s", rnd.job_id, rnd.round, root, units, tx_hash)

    def _reconcile(self, rep: SettleReport, rnd: Round, token: str, view: dict[str, Any], root: str) -> None:
        """The chain already has a root for the round: record it if it is ours."""
        chain_root = to_hex(bytes(view["root"]))
        if chain_root != root:
            return self._fail(rep, rnd, token, f"the chain holds root {chain_root} for this round, this coordinator "
                                               f"built {root}: its records and the chain disagree")
        self._mark_committed(rnd, token, self._indexed_tx(rnd, "RoundCommitted"), int(view["challengeEnd"]), root,
                             int(view["total"]), int(view["numUnits"]))
        rep.waiting.append(f"job {rnd.job_id} round {rnd.round}: commit found on chain, recorded")

    def _indexed_tx(self, rnd: Round, name: str) -> str | None:
        with self.ctx.sessions() as s:
            for tx_hash, args in s.execute(select(ChainEvent.tx_hash, ChainEvent.args).where(
                    ChainEvent.job_id == rnd.job_id, ChainEvent.name == name).order_by(ChainEvent.id.desc())):
                if int(args["round"]) == rnd.round:
                    return str(tx_hash)
        return None

    # -- finalize ----------------------------------------------------------------------------
    def _finalize(self, rep: SettleReport, job_id: int, round: int) -> None:
        view = self.market.get_round(job_id, round)
        status, end = int(view["status"]), int(view["challengeEnd"])
        if status == 1:
            now_chain = self.client.timestamp()
            if now_chain < end:
                rep.waiting.append(f"job {job_id} round {round}: challenge window open for {end - now_chain} s")
                return
            if int(view["openDisputes"]):
                rep.waiting.append(f"job {job_id} round {round}: {view['openDisputes']} open dispute(s)")
                return
        taken = self._take(job_id, round, state="committed", to="committed")
        if taken is None:
            return
        token, rnd, _job = taken
        if status == 0:  # a reorg took the commit away: commit again (after re-reading the chain)
            self._set(rnd.id, token, settle_state="committing", settle_lease_until=0.0)
            return
        tx_hash = self._indexed_tx(rnd, "RoundFinalized")
        if status == 1:
            try:
                tx_hash = self._send("finalizeRound", job_id, round)
                self._set(rnd.id, token, finalize_tx=tx_hash)
                self._wait(tx_hash, "finalizeRound", job_id, round)
            except (TransactionReverted, SendRejected) as e:
                if int(self.market.get_round(job_id, round)["status"]) != 2:  # not finalized by anyone: wait
                    self._set(rnd.id, token, settle_owner=None, settle_lease_until=None, finalize_tx=None)
                    rep.waiting.append(f"job {job_id} round {round}: finalizeRound reverted: {e}")
                    return
                tx_hash = None  # finalized by someone else meanwhile (anyone may)
        now = self.ctx.now()
        with self.ctx.transaction() as tx:
            moved = tx.session.execute(update(Round).where(Round.id == rnd.id, Round.settle_owner == token)
                                       .values(settle_state="finalized", settle_owner=None, settle_lease_until=None,
                                               settle_error=None, finalize_tx=func.coalesce(Round.finalize_tx, tx_hash)))
            if moved.rowcount:
                tx.emit("round.finalized", job_id, {"round": round, "tx": tx_hash}, now=now)
        rep.finalized.append((job_id, round, tx_hash or ""))

    # -- complete ------------------------------------------------------------------------------
    def _jobs_to_complete(self) -> list[int]:
        finalized = (select(func.count()).select_from(Round)
                     .where(Round.job_id == Job.id, Round.settle_state == "finalized").scalar_subquery())
        with self.ctx.sessions() as s:
            return list(s.scalars(select(Job.id).where(Job.status == "complete", Job.chain_status == "open",
                                                       Job.coordinator == self.address, finalized >= Job.rounds_total)))

    def _complete(self, rep: SettleReport, job_id: int) -> None:
        # completeJob is idempotent on chain (a second one reverts at estimation, costing nothing);
        # the lock only saves that estimation when several processes settle
        r, key = self.ctx.redis.sync, f"{self.ctx.settings.redis_prefix}:complete:{job_id}"
        if not r.set(key, "1", nx=True, ex=max(1, int(self.ctx.settings.settle_lease_s))):
            return
        try:
            tx_hash: str | None = None
            if int(self.market.get_job(job_id)["status"]) == 1:
                try:
                    tx_hash = self._send("completeJob", job_id)
                    self._wait(tx_hash, "completeJob", job_id)
                except (TransactionReverted, SendRejected) as e:
                    if int(self.market.get_job(job_id)["status"]) == 1:
                        rep.errors.append(f"job {job_id}: completeJob reverted: {e}")
                        log.warning("completeJob of job %s reverted: %s", job_id, e)
                        return
                    tx_hash = None
            now = self.ctx.now()
            with self.ctx.transaction() as tx:
                job = crud.get_job(tx.session, job_id=job_id)
                assert job is not None
                job.complete_tx = tx_hash or self._job_tx(job_id, "JobCompleted")
                if job.chain_status == "open":
                    job.chain_status = "completed"
                tx.emit("job.settled", job_id, {"tx": job.complete_tx, "rounds": job.rounds_total}, now=now)
            self.ctx.forget_job(job_id)
            rep.completed.append((job_id, tx_hash or ""))
        finally:
            r.delete(key)

    def _job_tx(self, job_id: int, name: str) -> str | None:
        with self.ctx.sessions() as s:
            return s.scalar(select(ChainEvent.tx_hash).where(ChainEvent.job_id == job_id, ChainEvent.name == name))
