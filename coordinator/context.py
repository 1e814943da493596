"""The running service's parts, built once per process by `create_app` and shared by the
routes (through `api/deps.py`) and the background sweeper."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from coordinator import crud
from coordinator.blobs import BlobStore
from coordinator.chain import ChainGateway
from coordinator.core.config import Settings
from coordinator.core.redis import RedisHandles
from coordinator.events import EventBus, PendingEvent
from coordinator.guards import NonceStore, RateLimiter
from coordinator.intake import Intake
from coordinator.leases import LeaseManager

if TYPE_CHECKING:
    from coordinator.aggregation import Aggregator
    from protocol.chain.keys import Signer

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: RedisHandles
    leases: LeaseManager
    blobs: BlobStore
    bus: EventBus
    nonces: NonceStore
    limiter: RateLimiter
    gateway: ChainGateway
    intake: Intake
    aggregator: "Aggregator | None" = None  # None: rounds wait in awaiting_aggregation
    db_revision: str = ""
    # the address this coordinator commits rounds from: the signer's, else settings.coordinator_address
    coordinator_address: str | None = None
    signer: "Signer | None" = field(default=None, repr=False)  # the coordinator's key; None = cannot settle
    job_briefs: dict[int, tuple[float, "JobBrief"]] = field(default_factory=dict)
    job_brief_ttl_s: float = 1.0
    workers_seen: dict[str, float] = field(default_factory=dict)
    worker_seen_resolution_s: float = 30.0

    def should_touch_worker(self, address: str, now: float) -> bool:
        """True at most once per `worker_seen_resolution_s` per worker and process: the
        workers table's last_seen is a dashboard figure, not worth a write per request."""
        if now - self.workers_seen.get(address, 0.0) < self.worker_seen_resolution_s:
            return False
        if len(self.workers_seen) > 100_000:
            self.workers_seen.clear()
        self.workers_seen[address] = now
        return True

    def job_brief(self, job_id: int) -> "JobBrief | None":
        """Status and current round of a job, cached for `job_brief_ttl_s` (claims read it on
        every request). This process forgets a job when it changes it (`forget_job`); another
        process's change is seen within the TTL, and a stale "active" only turns a 409 into
        an empty claim (204) because Redis holds no units of a closed round."""
        now = time.monotonic()
        hit = self.job_briefs.get(job_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.sessions() as s:
            job = crud.get_job(s, job_id=job_id)
            brief = None if job is None else JobBrief(job.status, job.current_round, job.hold_reason)
        if brief is not None:
            self.job_briefs[job_id] = (now + self.job_brief_ttl_s, brief)
        return brief

    def forget_job(self, job_id: int) -> None:
        self.job_briefs.pop(job_id, None)

    @staticmethod
    def now() -> float:
        return time.time()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator["Tx"]:
        """A session in a transaction; events emitted through it are published to the live
        stream only after the commit succeeded (the events table gets them in the same commit).

        `durable=False` (PostgreSQL: `SET LOCAL synchronous_commit = off`) skips waiting for
        the WAL flush, ~3.6 ms per commit here. Only for records whose truth lives elsewhere
        and which are rebuilt if lost: lease history and unit status mirror Redis. A crash of
        the database server (not of this process) can lose the last ~0.6 s of such commits;
        results, rounds and jobs always commit durably.
        """
        tx = Tx(self.sessions())
        if not durable and self.engine.dialect.name == "postgresql":
            tx.session.execute(text("SET LOCAL synchronous_commit = off"))
        try:
            yield tx
            tx.session.commit()
        except BaseException:
            tx.session.rollback()
            raise
        finally:
            tx.session.close()
        try:
            self.bus.publish(tx.pending)
        except redis.RedisError as e:  # the events table has them; the live feed is best effort
            log.warning("could not publish %d events to the live stream: %s", len(tx.pending), e)


@dataclass(frozen=True)
class JobBrief:
    status: str
    current_round: int
    hold_reason: str | None


@dataclass
class Tx:
    session: Session
    pending: list[PendingEvent] = field(default_factory=list)

    def emit(self, kind: str, job_id: int | None, data: dict[str, Any], *, now: float) -> None:
        crud.add_event(self.session, kind=kind, job_id=job_id, data=data, now=now)
        self.pending.append(PendingEvent(kind, job_id, data))
