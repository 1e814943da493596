"""The coordinator against a real chain: anvil with the Market deployed (one per test
session, `chain_market` in conftest.py), the real MarketGateway, the coordinator's key.

Dev accounts: 0 deployer, 1 model owner, 2 the coordinator (its key settles), 3-4 workers,
5-9 verifiers. Each test indexes from the block it started at (`start_block`), so the
jobs other tests posted on the shared chain never appear in its database.
"""
from __future__ import annotations

import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from coordinator.chain import MarketGateway
from coordinator.chain_loops import make_indexer, make_settler
from coordinator.core.config import Settings
from coordinator.indexer import ChainIndexer
from coordinator.intake import StructuralIntake
from coordinator.settlement import Settler
from deploy.devnet import LocalMarket
from protocol.chain import ChainClient, Role
from protocol.chain.keys import Signer
from protocol.hashing import sha256
from protocol.spec import JobSpec
from tests.coordinator.helpers import TEST_MANIFEST, Env

OWNER, COORD, WORKERS, VERIFIERS = 1, 2, (3, 4), (5, 6, 7, 8, 9)
ONE = 10**18


def signer(net: LocalMarket, index: int) -> Signer:
    return Signer(net.dev_accounts[index].account, source=f"anvil dev account {index}")


def post_job(net: LocalMarket, spec: JobSpec, *, spec_hash: bytes | None = None, budget: int | None = None,
             coordinator: int | str = COORD, window: int = 600) -> int:
    """The owner (dev 1) escrows and posts `spec` naming `coordinator` (a dev index or an address)."""
    owner = net.client(OWNER)
    coord = net.dev_accounts[coordinator].address if isinstance(coordinator, int) else coordinator
    job_id, _ = owner.market.post_job(spec_hash=spec_hash or spec.spec_hash(), budget=budget or spec.budget,
                                      reward_per_unit=spec.payment.reward_per_unit, max_units=spec.max_units,
                                      coordinator=coord, challenge_window=window, deadline=owner.timestamp() + 86_400)
    return job_id


def ensure_staked(net: LocalMarket, indexes: tuple[int, ...], role: Role) -> None:
    for i in indexes:
        c = net.client(i)
        need = c.market.min_stake(role)
        have = int(c.market.get_stake(c.address, role)["active"])
        if have < need:
            c.market.stake(role, need - have)


def chain_settings(net: LocalMarket, *, db_url: str, redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Background loops off (tests drive `indexer.poll()` / `settler.run_once()` themselves),
    indexing from the current head, no confirmations, no aggregation (structural results)."""
    fields: dict[str, Any] = dict(
        data_dir=data_dir, database_url=db_url, redis_url=redis_url, redis_prefix=f"c{uuid.uuid4().hex[:10]}",
        auto_migrate=True, rpc_url=net.rpc_url, market_address=net.deployment.address("Market"),
        chain_cache_ttl_s=0, sweep_interval_s=3600, aggregate=False, indexer_enabled=False, settlement_enabled=False,
        confirmations=0, indexer_start_block=net.client(0).block_number() + 1, max_json_bytes=1 << 20)
    fields.update(overrides)
    return Settings(**fields)


@dataclass
class ChainEnv:
    env: Env
    net: LocalMarket
    indexer: ChainIndexer
    settler: Settler | None

    @property
    def ctx(self) -> Any:
        return self.env.ctx

    def owner_upload(self, job_id: int, data: bytes) -> Any:
        """PUT /blobs/jobs/<job>/<sha256> signed by the job's owner (dev 1)."""
        from protocol.auth import make_auth_headers

        d = "0x" + sha256(data).hex()
        key = self.net.dev_accounts[OWNER].account
        h = make_auth_headers(key, method="PUT", path=f"/blobs/jobs/{job_id}/{d}", body_hash=bytes.fromhex(d[2:]),
                              chain_id=self.net.chain.chain_id)
        return self.env.client.put(f"/blobs/jobs/{job_id}/{d}", content=data, headers=h)

    def register(self, job_id: int, spec: JobSpec) -> Any:
        return self.env.call(self.env.accounts[0], "POST", "/jobs", {"job_id": job_id, "spec": spec.model_dump(mode="json")})

    def store_test_dataset(self) -> None:
        self.ctx.blobs.put_bytes(TEST_MANIFEST)


@contextmanager
def chain_env(net: LocalMarket, settings: Settings, *, key: int | None = COORD) -> Iterator[ChainEnv]:
    """The app on the real Market (StructuralIntake), signing settlements with dev `key`."""
    gw = MarketGateway(net.rpc_url, settings.market_address, cache_ttl_s=0)
    accounts = [net.dev_accounts[i].account for i in (*WORKERS, OWNER)]
    with Env.start(settings, gw, StructuralIntake(), accounts,  # type: ignore[arg-type]
                   signer=signer(net, key) if key is not None else None) as env:
        indexer = make_indexer(env.ctx)
        assert indexer is not None
        yield ChainEnv(env, net, indexer, make_settler(env.ctx))


def commit_tx_count(net: LocalMarket, start_block: int, selector_of: str) -> int:
    """Transactions to the Market calling `selector_of` (e.g. "commitRound") since `start_block`."""
    c = net.client(0)
    sel = "0x" + c.market.encode(selector_of, *_dummy_args(selector_of))[:4].hex()
    market = net.deployment.address("Market").lower()
    n = 0
    for b in range(start_block, c.block_number() + 1):
        for tx in c.w3.eth.get_block(b, full_transactions=True)["transactions"]:
            if (tx.get("to") or "").lower() == market and ("0x" + bytes(tx["input"]).hex()).startswith(sel):
                n += 1
    return n


def _dummy_args(fn: str) -> tuple[Any, ...]:
    return {"commitRound": (0, 0, b"\0" * 32, 0, 0), "finalizeRound": (0, 0), "completeJob": (0,)}[fn]


class TcpProxy:
    """A TCP forwarder to `target` on a fixed local port that can be taken down and brought
    back up (an RPC endpoint that goes away and returns)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def down(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            try:
                srv.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept() (close alone does not)
            except OSError:
                pass
            srv.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def rpc_client(url: str, *, account: Any = None) -> ChainClient:
    return ChainClient(url, account)
