"""The running service's parts, built once per process by `create_app` and shared by the
routes (through `api/deps.py`) and the background sweeper."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import redis
from sqlalchemy import Engine
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
    db_revision: str = ""

    @staticmethod
    def now() -> float:
        return time.time()

    @contextmanager
    def transaction(self) -> Iterator["Tx"]:
        """A session in a transaction; events emitted through it are published to the live
        stream only after the commit succeeded (the events table gets them in the same commit)."""
        tx = Tx(self.sessions())
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


@dataclass
class Tx:
    session: Session
    pending: list[PendingEvent] = field(default_factory=list)

    def emit(self, kind: str, job_id: int | None, data: dict[str, Any], *, now: float) -> None:
        crud.add_event(self.session, kind=kind, job_id=job_id, data=data, now=now)
        self.pending.append(PendingEvent(kind, job_id, data))
