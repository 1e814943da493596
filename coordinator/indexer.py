"""The chain indexer: follows the Market's and the JuryArbiter's events into `chain_events`.

Each `poll()`:
1. reads the head and indexes up to `head - confirmations` (never past it), at most
   `batch_blocks` blocks per poll;
2. first checks that the cursor's block still has the hash recorded for it. If not, the
   chain reorganised: it walks back over the recorded hashes (`chain_blocks`: every poll's
   last block and every block with an event) to the newest one the chain still has, undoes
   and deletes the events above it (coordinator/chain_state.py) and moves the cursor back;
   the next polls index the new branch;
3. fetches the logs of the range (one `eth_getLogs`), checks the range's last block hash did
   not change meanwhile, and in ONE transaction inserts the events not yet stored (unique
   by block hash + log index, so a restart or a second indexer never duplicates a row),
   applies their effects and advances the cursor with a compare-and-set (a concurrent
   indexer that moved it first makes this one roll back and retry).
The cursor and the events commit together, so a crash leaves either both or neither.

`run_forever()` calls `poll()` every `interval_s`; errors from the named tuple
`TRANSIENT` (RPC down, database or Redis hiccups) are logged and retried with backoff up to
`max_backoff_s`; anything else is logged with its traceback and retried too. The loop only
ends when its stop event is set: the indexer never takes the service down.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, TypeVar

import redis
import requests
from eth_utils import to_checksum_address
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from coordinator.chain_state import apply, event_job_id, json_safe, unapply
from coordinator.context import Context
from coordinator.errors import UnavailableError
from coordinator.models import ChainBlock, ChainCursor, ChainEvent
from protocol.chain.client import ChainClient, DecodedEvent
from protocol.chain.errors import ChainError, RpcUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = (ChainError, requests.RequestException, OperationalError, redis.RedisError, UnavailableError)
TRAIL_BLOCKS = 10_000  # recorded block hashes kept below the cursor: the deepest reorg handled in place


class ReorgDuringPoll(ChainError):
    """The range's last block changed while its logs were read; the next poll retries."""


class LogSource(Protocol):
    def head(self) -> int: ...
    def block_hash(self, number: int) -> str | None: ...
    def logs(self, addresses: Sequence[str], start: int, end: int) -> list[tuple[DecodedEvent, str]]: ...


class RpcLogSource:
    """Blocks and logs over JSON-RPC. Connection failures are retried for `deadline_s`, then
    raised as RpcUnavailable."""

    RETRYABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)

    def __init__(self, client: ChainClient, *, deadline_s: float = 5.0) -> None:
        self.client, self.deadline_s = client, deadline_s

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        deadline, delay = time.monotonic() + self.deadline_s, 0.05
        while True:
            try:
                return fn()
            except self.RETRYABLE as e:
                if time.monotonic() >= deadline:
                    raise RpcUnavailable(f"{what}: cannot reach {self.client.rpc_url} ({e.__class__.__name__}) "
                                         f"after {self.deadline_s:g} s") from e
                time.sleep(delay)
                delay = min(2 * delay, 1.0)

    def head(self) -> int:
        return int(self._retry(lambda: self.client.w3.eth.block_number, "eth_blockNumber"))

    def block_hash(self, number: int) -> str | None:
        from web3.exceptions import BlockNotFound

        def get() -> str | None:
            try:
                return "0x" + bytes(self.client.w3.eth.get_block(number)["hash"]).hex()
            except BlockNotFound:  # beyond the head (the chain got shorter)
                return None

        return self._retry(get, "eth_getBlockByNumber")

    def logs(self, addresses: Sequence[str], start: int, end: int) -> list[tuple[DecodedEvent, str]]:
        flt: Any = {"address": list(addresses), "fromBlock": start, "toBlock": end}
        raw = self._retry(lambda: self.client.w3.eth.get_logs(flt), "eth_getLogs")
        out = []
        for entry in raw:
            for ev in self.client.decode_logs([entry]):
                out.append((ev, "0x" + bytes(entry["blockHash"]).hex()))
        return out


@dataclass
class PollResult:
    head: int
    cursor: int
    indexed: int = 0  # new rows stored
    removed: int = 0  # rows deleted by a reorg
    admit: set[int] = field(default_factory=set)


class ChainIndexer:
    def __init__(self, ctx: Context, source: LogSource, addresses: Sequence[str], *, name: str = "market",
                 start_block: int = 0, confirmations: int = 0, batch_blocks: int = 2000) -> None:
        self.ctx, self.source, self.name = ctx, source, name
        self.addresses = [to_checksum_address(a) for a in addresses]
        self.start_block, self.confirmations, self.batch_blocks = start_block, confirmations, batch_blocks

    # -- one pass ------------------------------------------------------------------------
    def cursor(self) -> tuple[int, str | None]:
        with self.ctx.sessions() as s:
            cur = s.get(ChainCursor, self.name)
            return (cur.block_number, cur.block_hash) if cur else (self.start_block - 1, None)

    def poll(self) -> PollResult:
        head = self.source.head()
        number, known = self.cursor()
        res = PollResult(head, number)
        if known is not None and self.source.block_hash(number) != known:
            number, known, res.removed = self._rollback(number, known)
            res.cursor = number
        safe = head - self.confirmations
        if safe <= number:
            return res
        end = min(safe, number + self.batch_blocks)
        end_hash = self.source.block_hash(end)
        logs = self.source.logs(self.addresses, number + 1, end)
        if end_hash is None or self.source.block_hash(end) != end_hash:
            raise ReorgDuringPoll(f"block {end} changed while its logs were read; retrying")
        res.indexed, res.admit = self._store((number, known), logs, end, end_hash)
        res.cursor = end
        from coordinator.admission import admit

        for job_id in sorted(res.admit):
            admit(self.ctx, job_id)
        return res

    def catch_up(self, *, max_polls: int = 10_000) -> PollResult:
        """Poll until nothing new is left below the confirmation depth."""
        res = self.poll()
        for _ in range(max_polls):
            if res.cursor >= res.head - self.confirmations and res.removed == 0:
                break
            res = self.poll()
        return res

    def _move_cursor(self, s: Any, prev: tuple[int, str | None], number: int, block_hash: str | None) -> None:
        """Compare-and-set the cursor from `prev`; raises _Raced when another indexer moved it."""
        now = self.ctx.now()
        if prev[1] is None:
            if s.get(ChainCursor, self.name) is not None:
                raise _Raced()
            if block_hash is not None:
                s.add(ChainCursor(name=self.name, block_number=number, block_hash=block_hash, updated_at=now))
            return
        where = (ChainCursor.name == self.name, ChainCursor.block_number == prev[0], ChainCursor.block_hash == prev[1])
        if block_hash is None:
            moved = s.execute(delete(ChainCursor).where(*where)).rowcount
        else:
            moved = s.execute(update(ChainCursor).where(*where).values(block_number=number, block_hash=block_hash,
                                                                       updated_at=now)).rowcount
        if moved != 1:
            raise _Raced()

    def _store(self, prev: tuple[int, str | None], logs: list[tuple[DecodedEvent, str]], end: int,
               end_hash: str) -> tuple[int, set[int]]:
        now, stored, admit = self.ctx.now(), 0, set()
        try:
            with self.ctx.transaction() as tx:
                s = tx.session
                self._move_cursor(s, prev, end, end_hash)
                keys = {(h, ev.log_index) for ev, h in logs}
                have = set()
                for h in {h for h, _ in keys}:
                    have |= {(h, i) for (i,) in s.execute(select(ChainEvent.log_index).where(ChainEvent.block_hash == h))}
                disputes: dict[tuple[str, int], int] = {}
                blocks = {end: end_hash}
                for ev, h in logs:
                    blocks[ev.block_number] = h
                    if (h, ev.log_index) in have:
                        continue
                    args = json_safe(ev.args)
                    row = ChainEvent(block_number=ev.block_number, block_hash=h, log_index=ev.log_index,
                                     tx_hash=ev.tx_hash, contract=ev.address, name=ev.name, args=args,
                                     job_id=event_job_id(s, ev.name, args, disputes))
                    s.add(row)
                    s.flush()
                    if ev.name == "DisputeOpened" and row.job_id is not None:
                        disputes[("market", int(args["disputeId"]))] = row.job_id
                        disputes[("arbiter", int(args["arbiterDisputeId"]))] = row.job_id
                    job = apply(self.ctx, tx, row, now=now)
                    if job is not None:
                        admit.add(job)
                    stored += 1
                for number, h in blocks.items():
                    s.merge(ChainBlock(indexer=self.name, number=number, hash=h))
                s.execute(delete(ChainBlock).where(ChainBlock.indexer == self.name,
                                                   ChainBlock.number < end - TRAIL_BLOCKS))
        except (_Raced, IntegrityError):  # another indexer stored this range first: nothing lost
            log.info("indexer %s: another process advanced the cursor; re-reading it", self.name)
            return 0, set()
        return stored, admit

    def _rollback(self, number: int, known: str) -> tuple[int, str | None, int]:
        """Undo everything above the newest recorded block the chain still has."""
        with self.ctx.sessions() as s:
            trail = [(b.number, b.hash) for b in s.scalars(select(ChainBlock).where(
                ChainBlock.indexer == self.name, ChainBlock.number <= number).order_by(ChainBlock.number.desc()))]
        fork, fork_hash = self.start_block - 1, None
        for n, h in trail:
            if self.source.block_hash(n) == h:
                fork, fork_hash = n, h
                break
        now = self.ctx.now()
        try:
            with self.ctx.transaction() as tx:
                s = tx.session
                self._move_cursor(s, (number, known), fork, fork_hash)
                gone = list(s.scalars(select(ChainEvent).where(ChainEvent.block_number > fork)
                                      .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())))
                for ev in gone:
                    unapply(self.ctx, tx, ev, now=now)
                s.execute(delete(ChainEvent).where(ChainEvent.block_number > fork))
                s.execute(delete(ChainBlock).where(ChainBlock.indexer == self.name, ChainBlock.number > fork))
                tx.emit("chain.reorg", None, {"from_block": number, "to_block": fork, "removed_events": len(gone)},
                        now=now)
        except _Raced:
            return self.cursor() + (0,)
        log.warning("indexer %s: chain reorganised below block %d; rolled back to %d (%d events removed)",
                    self.name, number, fork, len(gone))
        return fork, fork_hash, len(gone)

    # -- the loop ------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, *, interval_s: float, max_backoff_s: float = 60.0,
                    lead: Callable[[], bool] = lambda: True) -> None:
        """Poll until `stop` is set. `lead()` says whether this process is the leader now."""
        backoff = interval_s
        while not stop.is_set():
            try:
                if lead():
                    res = self.poll()
                    # more to read below the confirmation depth: go again at once
                    wait = 0.0 if res.cursor < res.head - self.confirmations else interval_s
                else:
                    wait = interval_s
                backoff = interval_s
            except TRANSIENT as e:
                log.warning("indexer %s: %s; retrying in %.1f s", self.name, e, backoff)
                wait, backoff = backoff, min(2 * backoff, max_backoff_s)
            except Exception:
                log.exception("indexer %s: unexpected error; retrying in %.1f s", self.name, backoff)
                wait, backoff = backoff, min(2 * backoff, max_backoff_s)
            stop.wait(wait)


class _Raced(Exception):
    """The cursor moved under this indexer (another process indexed the range)."""
