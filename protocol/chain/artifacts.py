"""Compiled contract artifacts (protocol/artifacts/<Name>.json: abi, bytecode, deployedBytecode).

`scripts/compile_contracts.js` writes them from contracts/src and CI checks they do not
drift, so Python always talks to the exact bytecode the Solidity tests ran against.
Interfaces have an ABI but empty bytecode ("0x").
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from protocol.chain.errors import ChainError

ARTIFACT_DIR = Path(__file__).resolve().parent.parent / "artifacts"
ARTIFACTS_ENV = "CROWDTRAIN_ARTIFACTS_DIR"  # override, e.g. to talk to contracts built elsewhere


def artifact_dir() -> Path:
    env = os.environ.get(ARTIFACTS_ENV)
    return Path(env) if env else ARTIFACT_DIR


class ArtifactMissing(ChainError, FileNotFoundError):
    """A compiled contract artifact is not there (contracts not compiled yet)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str  # 0x-prefixed creation code; "0x" for interfaces and abstract contracts
    deployed_bytecode: str

    @property
    def deployable(self) -> bool:
        return len(self.bytecode) > 2

    def abi_list(self) -> list[dict[str, Any]]:
        return [dict(x) for x in self.abi]


@lru_cache(maxsize=None)
def _load(path: Path, mtime_ns: int) -> Artifact:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(name=path.stem, abi=tuple(data["abi"]), bytecode=data.get("bytecode", "0x"),
                        deployed_bytecode=data.get("deployedBytecode", "0x"))
    except (ValueError, KeyError) as e:
        raise ArtifactMissing(f"artifact {path} is malformed ({e}); run `make artifacts` to rebuild it") from e


def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """The artifact of contract `name` (e.g. "Market"); raises ArtifactMissing with what to run."""
    path = (directory or artifact_dir()) / f"{name}.json"
    if not path.is_file():
        have = ", ".join(available(directory)) or "none"
        raise ArtifactMissing(
            f"no compiled artifact for contract {name!r} at {path} (available: {have}); "
            "run `make setup` (or `make artifacts`) to compile contracts/src")
    return _load(path, path.stat().st_mtime_ns)


def available(directory: Path | None = None) -> list[str]:
    d = directory or artifact_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def all_abis(directory: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every artifact's ABI by contract name (used to build the revert-error registry)."""
    return {n: load_artifact(n, directory).abi_list() for n in available(directory)}
