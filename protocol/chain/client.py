"""JSON-RPC client core: connection, locally signed EIP-1559 transactions, typed reverts.

    client = ChainClient("http://127.0.0.1:8545", account)   # account: LocalAccount, Signer, hex key, None
    client.use_deployment()                                  # deploy/deployments/<chainId>.json
    client.market.stake(Role.WORKER, 10**21)                 # -> TxResult (hash, block, events)

Transactions are signed in-process (`sign_transaction` + `send_raw_transaction`), never
by the node, so any RPC URL works. Every send estimates gas first: a revert shows up
there, before any gas is spent, and is raised as the contract's typed error. Nonces are
tracked locally so sequential sends do not wait for the pending pool; after any failed
send the next one re-reads the nonce from the node.

Connection failures (refused, timeout, HTTP 5xx/429) are retried until `connect_deadline`
seconds pass, then raise `RpcUnavailable` naming the URL.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from protocol.chain.artifacts import Artifact, all_abis, load_artifact
from protocol.chain.contract import encode_args
from protocol.chain.deployment import Deployment
from protocol.chain.errors import ChainError, ErrorRegistry, RpcUnavailable, TransactionReverted, revert_data_from
from protocol.chain.keys import Signer, account_from_private_key

T = TypeVar("T")
# What a flaky or starting endpoint throws; anything else is a real error and propagates.
RETRYABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
LOG_CHUNK_BLOCKS = 10_000
GAS_MARGIN = 1.25  # estimate * margin: state can move between estimation and inclusion


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction. `url` links to the explorer when the deployment names one."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[DecodedEvent, ...] = field(default=())
    url: str | None = None
    contract_address: str | None = None

    def event(self, name: str) -> DecodedEvent:
        """The first event called `name` (raises ChainError if the transaction emitted none)."""
        for e in self.events:
            if e.name == name:
                return e
        raise ChainError(f"transaction {self.tx_hash} emitted no {name} event "
                         f"(emitted: {', '.join(e.name for e in self.events) or 'none'})")


class ChainClient:
    def __init__(self, rpc_url: str, account: LocalAccount | Signer | str | bytes | None = None, *,
                 timeout: float = 10.0, connect_deadline: float = 5.0, receipt_timeout: float = 120.0,
                 deployment: Deployment | None = None) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self.connect_deadline = connect_deadline
        self.receipt_timeout = receipt_timeout
        # Our own retry loop (below) has a deadline; web3's built-in retries would add backoff on top.
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None))
        if isinstance(account, Signer):
            account = account.account
        elif isinstance(account, (str, bytes)):
            account = account_from_private_key(account)
        self.account: LocalAccount | None = account
        self.chain_id: int = self._retry(lambda: self.w3.eth.chain_id, what="eth_chainId")
        self._nonce: int | None = None
        self._lock = threading.Lock()
        self._priority_fee: tuple[float, int] | None = None
        self.errors = ErrorRegistry(all_abis().values())
        self._event_abis: dict[bytes, dict[str, Any]] = {}
        for abi in all_abis().values():
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    sig = f"{item['name']}({','.join(_canonical_type(i) for i in item['inputs'])})"
                    self._event_abis[Web3.keccak(text=sig)] = item
        self.deployment: Deployment | None = None
        if deployment is not None:
            self.use_deployment(deployment)

    # -- connection ------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T], *, what: str) -> T:
        deadline = time.monotonic() + self.connect_deadline
        delay = 0.05
        while True:
            try:
                return fn()
            except requests.exceptions.HTTPError as e:
                code = e.response.status_code if e.response is not None else None
                if code is not None and (code >= 500 or code == 429) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise RpcUnavailable(f"RPC endpoint {self.rpc_url} answered {what} with HTTP {code}: "
                                     "is this a JSON-RPC URL? check --rpc-url") from e
            except RETRYABLE as e:
                if time.monotonic() >= deadline:
                    raise RpcUnavailable(
                        f"cannot reach the RPC endpoint {self.rpc_url} ({e.__class__.__name__}) after "
                        f"{self.connect_deadline:g} s; start a node there (`crowdtrain chain up` for a local "
                        "chain) or pass the right --rpc-url") from e
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A raw JSON-RPC request (e.g. anvil's evm_increaseTime); raises ChainError on an RPC error."""
        resp = self._retry(lambda: self.w3.provider.make_request(method, params or []), what=method)  # type: ignore[arg-type]
        if resp.get("error"):
            raise ChainError(f"{method} failed on {self.rpc_url}: {resp['error']}")
        return resp.get("result")

    @property
    def address(self) -> str:
        if self.account is None:
            raise ChainError("this client has no signing key; pass a key to ChainClient to send transactions")
        return self.account.address

    def block_number(self) -> int:
        return self._retry(lambda: self.w3.eth.block_number, what="eth_blockNumber")

    def timestamp(self, block: int | str = "latest") -> int:
        """Unix seconds of `block`."""
        return int(self._retry(lambda: self.w3.eth.get_block(block), what="eth_getBlockByNumber")["timestamp"])

    def eth_balance(self, address: str) -> int:
        return self._retry(lambda: self.w3.eth.get_balance(to_checksum_address(address)), what="eth_getBalance")

    # -- calls and transactions ------------------------------------------------------
    def _typed(self, e: Exception, tx_hash: str | None = None) -> Exception:
        data = revert_data_from(e)
        if data is not None:
            return self.errors.decode(data, tx_hash=tx_hash)
        if isinstance(e, ContractLogicError):
            return TransactionReverted(f"reverted: {e.message or e}", tx_hash=tx_hash)
        return e

    def call(self, to: str, data: bytes, *, sender: str | None = None, block: int | str = "latest") -> bytes:
        """eth_call; a revert raises the typed ContractRevert."""
        tx: dict[str, Any] = {"to": to_checksum_address(to), "data": "0x" + data.hex()}
        if sender or self.account:
            tx["from"] = sender or self.address
        try:
            return bytes(self._retry(lambda: self.w3.eth.call(tx, block), what="eth_call"))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as e:
            raise self._typed(e) from None

    def _fees(self) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) in wei: 2x the latest base fee plus the tip."""
        now = time.monotonic()
        if self._priority_fee is None or now - self._priority_fee[0] > 30:
            tip = self._retry(lambda: self.w3.eth.max_priority_fee, what="eth_maxPriorityFeePerGas")
            self._priority_fee = (now, int(tip))
        tip = self._priority_fee[1]
        base = int(self._retry(lambda: self.w3.eth.get_block("latest"), what="eth_getBlockByNumber")
                   .get("baseFeePerGas", 0))
        return 2 * base + tip, tip

    def send(self, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None,
             wait: bool = True) -> TxResult | str:
        """Sign and send; with wait=True return the TxResult of the mined transaction.

        `to=None` deploys `data` as creation code. A revert during gas estimation or
        in the mined transaction raises the typed ContractRevert (with `tx_hash` when mined).
        """
        base: dict[str, Any] = {"from": self.address, "value": value, "data": "0x" + data.hex()}
        if to is not None:
            base["to"] = to_checksum_address(to)
        if gas is None:
            try:
                est = self._retry(lambda: self.w3.eth.estimate_gas(base), what="eth_estimateGas")  # type: ignore[arg-type]
            except (ContractLogicError, Web3RPCError) as e:
                raise self._typed(e) from None
            gas = int(est * GAS_MARGIN) + 10_000
        max_fee, tip = self._fees()
        with self._lock:
            if self._nonce is None:
                self._nonce = self._retry(lambda: self.w3.eth.get_transaction_count(self.address, "pending"),
                                          what="eth_getTransactionCount")
            tx = {**base, "gas": gas, "nonce": self._nonce, "chainId": self.chain_id, "type": 2,
                  "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
            signed = self.account.sign_transaction(tx)  # type: ignore[union-attr]
            try:
                tx_hash = self._retry(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction),
                                      what="eth_sendRawTransaction")
            except Exception:
                self._nonce = None  # unknown whether the node took it: re-read next time
                raise
            self._nonce += 1
        hx = "0x" + bytes(tx_hash).hex()
        return self.wait(hx, replay=tx) if wait else hx

    def wait(self, tx_hash: str, *, replay: dict[str, Any] | None = None) -> TxResult:
        """Wait for the receipt; a failed transaction raises its typed revert (replayed via eth_call)."""
        try:
            rc = self._retry(lambda: self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout, poll_latency=0.1), what="eth_getTransactionReceipt")  # type: ignore[arg-type]
        except TimeExhausted as e:
            raise ChainError(f"transaction {tx_hash} not mined after {self.receipt_timeout:g} s; "
                             "it may still be pending (fees too low?)") from e
        if rc["status"] != 1:
            err: Exception = TransactionReverted(f"transaction {tx_hash} reverted", tx_hash=tx_hash)
            if replay is not None:
                call = {k: replay[k] for k in ("from", "to", "data", "value", "gas") if k in replay}
                try:
                    self.w3.eth.call(call, rc["blockNumber"] - 1)  # type: ignore[arg-type]
                except (ContractLogicError, Web3RPCError) as e:
                    err = self._typed(e, tx_hash=tx_hash)
                    if isinstance(err, TransactionReverted):
                        err.tx_hash = tx_hash
            raise err
        events = tuple(self.decode_logs(rc["logs"]))
        addr = rc.get("contractAddress")
        url = self.deployment.tx_url(tx_hash) if self.deployment else None
        return TxResult(tx_hash, int(rc["blockNumber"]), int(rc["gasUsed"]), events, url,
                        to_checksum_address(addr) if addr else None)

    def deploy(self, artifact: Artifact | str, *args: Any) -> TxResult:
        """Deploy a compiled contract; `TxResult.contract_address` is the new address."""
        art = load_artifact(artifact) if isinstance(artifact, str) else artifact
        if not art.deployable:
            raise ChainError(f"{art.name} has no bytecode (an interface or abstract contract)")
        ctor = next((i for i in art.abi if i.get("type") == "constructor"), {"inputs": []})
        data = bytes.fromhex(art.bytecode[2:]) + encode_args(ctor["inputs"], args)
        res = self.send(None, data)
        assert isinstance(res, TxResult)
        return res

    # -- events ----------------------------------------------------------------------
    def decode_logs(self, logs: Iterable[Any]) -> list[DecodedEvent]:
        """Decode logs whose first topic matches an event in any known ABI; others are skipped."""
        from web3._utils.events import get_event_data  # web3's own decoder (handles indexed args)

        out = []
        for log in logs:
            topics = log.get("topics") or []
            abi = self._event_abis.get(bytes(topics[0])) if topics else None
            if abi is None:
                continue
            d = get_event_data(self.w3.codec, abi, log)
            out.append(DecodedEvent(d["event"], _plain(d["args"]), to_checksum_address(d["address"]),
                                    int(d["blockNumber"]), "0x" + bytes(d["transactionHash"]).hex(),
                                    int(d["logIndex"])))
        return out

    def get_events(self, address: str | list[str], *, from_block: int = 0, to_block: int | str = "latest",
                   name: str | None = None, chunk: int = LOG_CHUNK_BLOCKS) -> list[DecodedEvent]:
        """Decoded events emitted by `address` in blocks [from_block, to_block], optionally only `name`.

        Queried `chunk` blocks at a time: public RPCs cap eth_getLogs ranges (often 10k blocks).
        """
        addrs = [to_checksum_address(a) for a in ([address] if isinstance(address, str) else address)]
        last = self.block_number() if to_block == "latest" else int(to_block)
        out: list[DecodedEvent] = []
        start = from_block
        while start <= last:
            end = min(start + chunk - 1, last)
            flt: dict[str, Any] = {"address": addrs, "fromBlock": start, "toBlock": end}
            logs = self._retry(lambda: self.w3.eth.get_logs(flt), what="eth_getLogs")  # type: ignore[arg-type]
            out.extend(e for e in self.decode_logs(logs) if name is None or e.name == name)
            start = end + 1
        return out

    # -- deployment and contract facades ---------------------------------------------
    def use_deployment(self, deployment: Deployment | None = None) -> Deployment:
        """Bind token/market/jury to a deployment (default: deploy/deployments/<chainId>.json)."""
        dep = deployment or Deployment.for_chain(self.chain_id)
        if dep.chain_id != self.chain_id:
            raise ChainError(f"deployment is for chain {dep.chain_id} but {self.rpc_url} is chain {self.chain_id}")
        self.deployment = dep
        return dep

    def _dep(self) -> Deployment:
        if self.deployment is None:
            self.use_deployment()
        assert self.deployment is not None
        return self.deployment

    @property
    def token(self) -> "TokenApi":
        from protocol.chain.token import TokenApi

        dep = self._dep()
        name = "TestToken" if "TestToken" in dep.contracts else "Token"
        return TokenApi(self, dep.address(name))

    @property
    def market(self) -> "MarketApi":
        from protocol.chain.market import MarketApi

        return MarketApi(self, self._dep().address("Market"))

    @property
    def jury(self) -> "JuryApi":
        from protocol.chain.jury import JuryApi

        return JuryApi(self, self._dep().address("JuryArbiter"))


def _canonical_type(inp: dict[str, Any]) -> str:
    t = inp["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in inp.get("components", [])) + ")" + t[5:]
    return t


def _plain(v: Any) -> Any:
    """AttributeDict/HexBytes -> dict/bytes, recursively."""
    if hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v) if isinstance(v, list) else tuple(_plain(x) for x in v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return v


if TYPE_CHECKING:  # facades import this module; import them lazily at run time
    from protocol.chain.jury import JuryApi
    from protocol.chain.market import MarketApi
    from protocol.chain.token import TokenApi
