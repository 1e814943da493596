"""A contract bound to a client and an address: encode, call (decoded, structs as dicts), transact.

The typed facades (token.py, market.py, jury.py) are thin layers over `BoundContract`
that name every argument and state units; this class does the ABI work once.

Struct outputs come back as dicts keyed by the Solidity field names (nested structs too),
so `market.get_job(1)["escrow"]` reads like the NatSpec. A function with one output
returns that value; several outputs return a dict by name (or a tuple when unnamed).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from protocol.chain.artifacts import load_artifact
from protocol.chain.errors import ChainError

if TYPE_CHECKING:
    from protocol.chain.client import ChainClient, DecodedEvent, TxResult


def _type(inp: dict[str, Any]) -> str:
    t = inp["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in inp.get("components", [])) + ")" + t[5:]
    return t


def to_abi_value(inp: dict[str, Any], value: Any) -> Any:
    """Python value -> what eth_abi encodes: struct dicts become tuples in field order (recursively)."""
    t = inp["type"]
    if t.endswith("]"):
        inner = dict(inp, type=t[: t.rindex("[")])
        return [to_abi_value(inner, v) for v in value]
    if t == "tuple":
        comps = inp["components"]
        if isinstance(value, dict):
            missing = [c["name"] for c in comps if c["name"] not in value]
            if missing:
                raise ChainError(f"struct argument {inp.get('name') or ''} lacks fields {missing}")
            value = [value[c["name"]] for c in comps]
        return tuple(to_abi_value(c, v) for c, v in zip(comps, value))
    return value


def encode_args(inputs: list[dict[str, Any]], args: tuple[Any, ...] | list[Any]) -> bytes:
    """ABI-encode `args` for `inputs` (a function's or constructor's ABI inputs)."""
    if len(args) != len(inputs):
        raise ChainError(f"expected {len(inputs)} arguments ({', '.join(i.get('name') or i['type'] for i in inputs)}), "
                         f"got {len(args)}")
    return abi_encode([_type(i) for i in inputs], [to_abi_value(i, a) for i, a in zip(inputs, args)])


def _named(inp: dict[str, Any], value: Any) -> Any:
    """Decoded ABI value -> dicts for structs (by component name), lists for arrays, checksummed addresses."""
    t = inp["type"]
    if t.endswith("]"):
        inner = dict(inp, type=t[: t.rindex("[")])
        return [_named(inner, v) for v in value]
    if t == "tuple":
        return {c["name"]: _named(c, v) for c, v in zip(inp["components"], value)}
    if t == "address":
        return to_checksum_address(value)
    return value


class BoundContract:
    """`name` picks the ABI from protocol/artifacts (e.g. "Market")."""

    def __init__(self, client: "ChainClient", name: str, address: str) -> None:
        self.client = client
        self.name = name
        self.address = to_checksum_address(address)
        self.abi = load_artifact(name).abi_list()
        self._fns = {item["name"]: item for item in self.abi if item.get("type") == "function"}

    def _fn(self, fn: str) -> dict[str, Any]:
        item = self._fns.get(fn)
        if item is None:
            raise ChainError(f"{self.name} ABI has no function {fn!r}; rebuild protocol/artifacts (make artifacts)")
        return item

    def encode(self, fn: str, *args: Any) -> bytes:
        """Calldata: 4-byte selector ++ ABI-encoded args (struct args may be dicts by field name)."""
        item = self._fn(fn)
        inputs = item.get("inputs", [])
        sel = function_signature_to_4byte_selector(f"{fn}({','.join(_type(i) for i in inputs)})")
        return sel + encode_args(inputs, args)

    def call(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """Run a view/pure function (or simulate a state-changing one) and decode its outputs."""
        item = self._fn(fn)
        raw = self.client.call(self.address, self.encode(fn, *args), block=block)
        outs = item.get("outputs", [])
        values = abi_decode([_type(o) for o in outs], raw)
        named = [_named(o, v) for o, v in zip(outs, values)]
        if len(outs) == 1:
            return named[0]
        if outs and all(o.get("name") for o in outs):
            return {o["name"]: v for o, v in zip(outs, named)}
        return tuple(named)

    def transact(self, fn: str, *args: Any, gas: int | None = None) -> "TxResult":
        """Send a transaction calling `fn`; raises the typed revert if it would fail."""
        res = self.client.send(self.address, self.encode(fn, *args), gas=gas)
        return res  # type: ignore[return-value]

    def events(self, name: str | None = None, *, from_block: int | None = None,
               to_block: int | str = "latest") -> list["DecodedEvent"]:
        """Decoded events of this contract (default from the deployment's start block)."""
        if from_block is None:
            dep = self.client.deployment
            from_block = dep.start_block if dep else 0
        return self.client.get_events(self.address, from_block=from_block, to_block=to_block, name=name)
