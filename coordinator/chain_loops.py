"""The background chain loops of a coordinator process: the indexer and the settlement.

`ChainLoops.from_context(ctx)` builds what the configuration allows: the indexer when
`indexer_enabled` and the gateway talks to a chain (an injected test gateway has no chain
to follow), the settlement when `settlement_enabled` and the coordinator has a key.
`start()` runs each in a daemon thread every `chain_poll_interval_s`; in each pass only the
process holding the loop's Redis leader lock works (coordinator/leader.py); `stop()` ends
them and hands leadership over at once. `crowdtrain coordinator settle --once` runs one
pass of both without the threads.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from coordinator.context import Context
from coordinator.indexer import TRANSIENT, ChainIndexer, RpcLogSource
from coordinator.leader import LeaderLock
from coordinator.settlement import SettleReport, Settler

log = logging.getLogger(__name__)
ZERO = "0x" + "00" * 20


def make_indexer(ctx: Context) -> ChainIndexer | None:
    """The Market (+ JuryArbiter) indexer over the gateway's RPC client; None without a chain."""
    client = getattr(ctx.gateway, "client", None)
    if client is None:
        return None
    from protocol.chain.errors import DeploymentError
    from protocol.chain.market import MarketApi

    market = ctx.gateway.market_address
    addresses = [market]
    arbiter = MarketApi(client, market).arbiter_address()
    if arbiter != ZERO:
        addresses.append(arbiter)
    start = ctx.settings.indexer_start_block
    if start is None:
        start = 0
        try:  # the deployment record knows the block the Market was deployed in
            from protocol.chain.deployment import Deployment

            dep = Deployment.for_chain(client.chain_id)
            if dep.address("Market") == market:
                start = dep.start_block
        except (DeploymentError, KeyError, OSError):
            pass
    return ChainIndexer(ctx, RpcLogSource(client), addresses, start_block=start,
                        confirmations=ctx.settings.resolved_confirmations(client.chain_id),
                        batch_blocks=ctx.settings.indexer_batch_blocks)


def make_settler(ctx: Context) -> Settler | None:
    """A Settler signing with the coordinator's key; None without a key or a chain."""
    gw_client = getattr(ctx.gateway, "client", None)
    if ctx.signer is None or gw_client is None:
        return None
    from protocol.chain.client import ChainClient

    return Settler(ctx, ChainClient(gw_client.rpc_url, ctx.signer))


@dataclass
class ChainLoops:
    ctx: Context
    indexer: ChainIndexer | None
    settler: Settler | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    locks: list[LeaderLock] = field(default_factory=list)

    @classmethod
    def from_context(cls, ctx: Context) -> "ChainLoops":
        s = ctx.settings
        indexer = make_indexer(ctx) if s.indexer_enabled else None
        settler = make_settler(ctx) if s.settlement_enabled else None
        if s.indexer_enabled and indexer is None:
            log.info("chain indexer off: the gateway has no chain client (an injected test gateway)")
        if s.settlement_enabled and settler is None:
            log.warning("settlement off: no coordinator key (set CROWDTRAIN_COORD_KEYSTORE or $%s); closed rounds "
                        "wait uncommitted", s.key_env)
        return cls(ctx, indexer, settler)

    def _lock(self, name: str) -> LeaderLock:
        s = self.ctx.settings
        lock = LeaderLock(self.ctx.redis.sync, s.redis_prefix, name, ttl_s=max(60.0, 10 * s.chain_poll_interval_s))
        self.locks.append(lock)
        return lock

    def start(self) -> None:
        interval = self.ctx.settings.chain_poll_interval_s
        if self.indexer is not None:
            lock = self._lock("indexer")
            idx = self.indexer
            self._spawn("chain-indexer", lambda: idx.run_forever(self.stop_event, interval_s=interval, lead=lock.hold))
            log.info("chain indexer on: %s from block %d, %d confirmation(s)", ", ".join(idx.addresses),
                     idx.start_block, idx.confirmations)
        if self.settler is not None:
            lock = self._lock("settlement")
            settler = self.settler
            self._spawn("settlement", lambda: settle_forever(settler, self.stop_event, interval_s=interval,
                                                             lead=lock.hold))
            log.info("settlement on: committing as %s", settler.address)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout_s)
        for lock in self.locks:
            try:
                lock.release()
            except TRANSIENT:
                pass


def settle_forever(settler: Settler, stop: threading.Event, *, interval_s: float,
                   lead: Callable[[], bool] = lambda: True) -> None:
    """One settlement pass every `interval_s` while leading; errors are logged, never fatal."""
    while not stop.is_set():
        try:
            if lead():
                report_pass(settler.run_once())
        except TRANSIENT as e:
            log.warning("settlement pass failed: %s; retrying in %.1f s", e, interval_s)
        except Exception:
            log.exception("settlement pass failed unexpectedly; retrying in %.1f s", interval_s)
        stop.wait(interval_s)


def report_pass(rep: SettleReport) -> None:
    for job, rnd, tx in rep.committed:
        log.info("committed job %s round %s in %s", job, rnd, tx)
    for job, rnd, tx in rep.finalized:
        log.info("finalized job %s round %s in %s", job, rnd, tx)
    for job, tx in rep.completed:
        log.info("completed job %s in %s", job, tx)
