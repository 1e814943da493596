"""The coordinator's view of the chain: stakes and jobs, behind one narrow seam.

`ChainGateway` is what the service needs to know from the Market; `MarketGateway`
implements it over `protocol.chain` (any RPC URL) with a short TTL cache so a hot worker
does not cost one RPC call per request. `TestOnlyStaticGateway` answers from in-memory
tables: it exists for tests of everything that is not the chain, is never built from
settings, and must be passed explicitly to `create_app(..., gateway=...)`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from eth_utils import to_checksum_address

from coordinator.errors import UnavailableError

T = TypeVar("T")
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True, kw_only=True)
class ChainJob:
    """A job as the Market holds it. Amounts in token base units, times unix seconds."""

    job_id: int
    owner: str
    coordinator: str
    spec_hash: str  # 0x-hex
    reward_per_unit: int
    max_units: int
    deadline: int
    status: int  # protocol.chain.JobStatus: 1 open, 2 completed, 3 closed


class ChainGateway(Protocol):
    chain_id: int
    market_address: str

    def worker_stake(self, account: str) -> int:
        """Active worker stake of `account` (base units; unbonding stake does not count)."""

    def min_worker_stake(self) -> int:
        """Minimum active stake a worker needs (base units)."""

    def get_job(self, job_id: int) -> ChainJob | None:
        """The job, or None when no job has this id."""


class _TtlCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: dict[object, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: object, fetch: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]  # type: ignore[return-value]
        value = fetch()  # outside the lock: a slow RPC must not serialise every request
        with self._lock:
            if len(self._items) > 100_000:
                self._items.clear()
            self._items[key] = (now + self.ttl_s, value)
        return value


class MarketGateway:
    """Reads the Market through protocol.chain. Raises UnavailableError when the RPC is down."""

    def __init__(self, rpc_url: str, market_address: str | None, *, cache_ttl_s: float = 10.0,
                 min_worker_stake: int | None = None, expected_chain_id: int | None = None) -> None:
        from protocol.chain import ChainClient, ChainError
        from protocol.chain.market import MarketApi

        self._chain_error = ChainError
        try:
            self.client = ChainClient(rpc_url, None)
            if market_address is None:
                market_address = self.client.use_deployment().address("Market")
        except ChainError as e:
            raise UnavailableError(f"cannot use the chain at {rpc_url}: {e} (set CROWDTRAIN_COORD_RPC_URL and "
                                   "CROWDTRAIN_COORD_MARKET_ADDRESS)") from e
        self.chain_id = self.client.chain_id
        if expected_chain_id is not None and expected_chain_id != self.chain_id:
            raise UnavailableError(f"RPC {rpc_url} serves chain {self.chain_id}, settings expect {expected_chain_id}")
        self.market_address = to_checksum_address(market_address)
        self.market = MarketApi(self.client, self.market_address)
        self._cache = _TtlCache(cache_ttl_s)
        self._min_override = min_worker_stake

    def _read(self, key: object, fetch: Callable[[], T]) -> T:
        try:
            return self._cache.get(key, fetch)
        except self._chain_error as e:
            raise UnavailableError(f"chain read failed ({e}); retry shortly") from e

    def worker_stake(self, account: str) -> int:
        return self._read(("stake", account.lower()), lambda: int(self.market.get_stake(account, 1)["active"]))

    def min_worker_stake(self) -> int:
        if self._min_override is not None:
            return self._min_override
        return self._read("min", lambda: self.market.min_stake(1))

    def get_job(self, job_id: int) -> ChainJob | None:
        def fetch() -> ChainJob | None:
            j = self.market.get_job(job_id)
            if int(j["status"]) == 0 or j["owner"] == ZERO_ADDRESS:
                return None
            return ChainJob(job_id=job_id, owner=to_checksum_address(j["owner"]),
                            coordinator=to_checksum_address(j["coordinator"]), spec_hash="0x" + bytes(j["specHash"]).hex(),
                            reward_per_unit=int(j["rewardPerUnit"]), max_units=int(j["maxUnits"]),
                            deadline=int(j["deadline"]), status=int(j["status"]))

        return self._read(("job", job_id), fetch)


@dataclass
class TestOnlyStaticGateway:
    """In-memory stakes and jobs for tests that do not exercise the chain. Never the default:
    nothing in settings builds it; a test passes it to create_app explicitly."""

    __test__ = False  # not a pytest class

    chain_id: int = 31337
    market_address: str = "0x" + "11" * 20
    min_stake: int = 100
    stakes: dict[str, int] = field(default_factory=dict)
    jobs: dict[int, ChainJob] = field(default_factory=dict)

    def worker_stake(self, account: str) -> int:
        return self.stakes.get(to_checksum_address(account), 0)

    def min_worker_stake(self) -> int:
        return self.min_stake

    def get_job(self, job_id: int) -> ChainJob | None:
        return self.jobs.get(job_id)
