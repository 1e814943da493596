"""Deployment records: deploy/deployments/<chainId>.json (written by deploy/deploy.py).

    {"chainId": 31337, "deployer": "0x..", "explorer": null,
     "contracts": {"TestToken": {"address": "0x..", "blockNumber": 1, "txHash": "0x.."},
                   "Market": {...}, "JuryArbiter": {...}},
     "params": {"market": {...constructor params...}, "jury": {...}}}

Every role finds the contracts it talks to through this file (or explicit addresses), so
a deployment is one file to copy between machines. `explorer` is an optional block
explorer base URL (e.g. "https://sepolia.etherscan.io") used to print transaction links.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from protocol.chain.errors import DeploymentError

DEPLOYMENTS_ENV = "CROWDTRAIN_DEPLOYMENTS_DIR"
DEFAULT_DEPLOYMENTS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "deployments"


def deployments_dir() -> Path:
    """`$CROWDTRAIN_DEPLOYMENTS_DIR` if set, else deploy/deployments/ in the source tree."""
    env = os.environ.get(DEPLOYMENTS_ENV)
    return Path(env) if env else DEFAULT_DEPLOYMENTS_DIR


@dataclass(frozen=True)
class ContractRecord:
    address: str
    block_number: int
    tx_hash: str | None  # None for contracts deployed elsewhere (an existing token)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "blockNumber": self.block_number, "txHash": self.tx_hash}


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    contracts: dict[str, ContractRecord]
    deployer: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    explorer: str | None = None

    def address(self, name: str) -> str:
        rec = self.contracts.get(name)
        if rec is None:
            raise DeploymentError(f"deployment on chain {self.chain_id} has no {name} "
                                  f"(has: {', '.join(sorted(self.contracts)) or 'nothing'})")
        return rec.address

    @property
    def start_block(self) -> int:
        """First block worth scanning for events (the earliest deployment block)."""
        return min((r.block_number for r in self.contracts.values()), default=0)

    def tx_url(self, tx_hash: str) -> str | None:
        return f"{self.explorer.rstrip('/')}/tx/{tx_hash}" if self.explorer else None

    @classmethod
    def from_addresses(cls, chain_id: int, **addresses: str) -> "Deployment":
        """A deployment from explicit addresses, e.g. from_addresses(1, Market="0x..", TestToken="0x..")."""
        return cls(chain_id, {n: ContractRecord(_addr(a, n), 0, None) for n, a in addresses.items()})

    def to_json(self) -> dict[str, Any]:
        return {"chainId": self.chain_id, "deployer": self.deployer, "explorer": self.explorer,
                "contracts": {n: r.to_json() for n, r in sorted(self.contracts.items())}, "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "deployment") -> "Deployment":
        try:
            contracts = {n: ContractRecord(_addr(r["address"], n), int(r.get("blockNumber") or 0), r.get("txHash"))
                         for n, r in data["contracts"].items()}
            return cls(int(data["chainId"]), contracts, data.get("deployer"), dict(data.get("params") or {}),
                       data.get("explorer"))
        except (KeyError, TypeError, ValueError) as e:
            raise DeploymentError(f"{source} is malformed ({e.__class__.__name__}: {e}); "
                                  "redeploy with `crowdtrain chain deploy` or fix the file") from e

    def save(self, directory: Path | None = None) -> Path:
        d = directory or deployments_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{self.chain_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a file
        return path

    @classmethod
    def load(cls, path: Path) -> "Deployment":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeploymentError(f"no deployment file {path}") from None
        except ValueError as e:
            raise DeploymentError(f"deployment file {path} is not JSON ({e})") from e
        return cls.from_json(data, source=str(path))

    @classmethod
    def for_chain(cls, chain_id: int, directory: Path | None = None) -> "Deployment":
        d = directory or deployments_dir()
        path = d / f"{chain_id}.json"
        if not path.is_file():
            raise DeploymentError(
                f"no deployment for chain {chain_id} in {d}; deploy with `crowdtrain chain deploy "
                f"--rpc-url URL` (or `crowdtrain chain up` locally), or pass the contract addresses")
        dep = cls.load(path)
        if dep.chain_id != chain_id:
            raise DeploymentError(f"{path} is for chain {dep.chain_id}, not {chain_id}")
        return dep


def _addr(a: str, name: str) -> str:
    if not isinstance(a, str) or not is_address(a):
        raise DeploymentError(f"address of {name} is not a 20-byte hex address: {a!r}")
    return to_checksum_address(a)
