"""A local anvil chain for development, the demo and tests.

    with LocalChain() as chain:           # anvil on a free port, stopped by PID on exit
        chain.rpc_url, chain.dev_accounts

anvil listens on `--port 0` (the OS picks a free port) and prints
`Listening on 127.0.0.1:PORT`; we read that line from its log file (a file, not a pipe:
anvil logs every transaction and a full pipe would block it), then wait until JSON-RPC
answers. Stopping sends SIGTERM to that PID (SIGKILL after 5 s); an atexit hook and, on
Linux, PR_SET_PDEATHSIG make sure no anvil outlives the Python process that started it.

The dev accounts are anvil's defaults: derived from the well-known public test mnemonic
"test test ... junk" (m/44'/60'/0'/0/i), each funded with `balance_eth` ether. Their
private keys are PUBLIC test keys: never send real funds to them.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from deploy import DeployError

ROOT = Path(__file__).resolve().parents[1]
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
LOCAL_CHAIN_ID = 31337
_LISTEN = re.compile(r"Listening on ([0-9.]+):(\d+)")


class LocalChainError(DeployError, RuntimeError):
    """anvil could not be found or did not start."""


def find_anvil() -> str:
    """`$CROWDTRAIN_ANVIL`, then .bin/anvil, the npm package's binary, then anvil on PATH."""
    candidates = [os.environ.get("CROWDTRAIN_ANVIL"), str(ROOT / ".bin" / "anvil"),
                  str(ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"),
                  shutil.which("anvil")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise LocalChainError("anvil not found: run `make setup` (installs Foundry from npm into .bin/) "
                          "or set CROWDTRAIN_ANVIL=/path/to/anvil")


@dataclass(frozen=True)
class DevAccount:
    """A funded anvil dev account. `private_key` is a PUBLIC test key (anvil's default mnemonic)."""

    index: int
    account: LocalAccount = field(repr=False)

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def private_key(self) -> str:
        return "0x" + bytes(self.account.key).hex()


def dev_accounts(n: int = 10, mnemonic: str = ANVIL_MNEMONIC) -> list[DevAccount]:
    Account.enable_unaudited_hdwallet_features()
    return [DevAccount(i, Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")) for i in range(n)]


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class LocalChain:
    """One anvil process. `accounts` dev accounts with `balance_eth` ether each."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, accounts: int = 10, balance_eth: int = 10_000,
                 chain_id: int = LOCAL_CHAIN_ID, block_time: float | None = None, startup_timeout: float = 30.0,
                 anvil: str | None = None, log_dir: str | Path | None = None) -> None:
        self.host, self.port, self.n_accounts = host, port, accounts
        self.balance_eth, self.chain_id, self.block_time = balance_eth, chain_id, block_time
        self.startup_timeout = startup_timeout
        self.anvil = anvil or find_anvil()
        self._log_dir = Path(log_dir) if log_dir else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.rpc_url: str = ""
        self.log_path: Path | None = None
        self.dev_accounts: list[DevAccount] = dev_accounts(accounts)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "LocalChain":
        if self.proc is not None:
            return self
        d = self._log_dir or Path(tempfile.mkdtemp(prefix="crowdtrain-anvil-"))
        d.mkdir(parents=True, exist_ok=True)
        self.log_path = d / "anvil.log"
        cmd = [self.anvil, "--host", self.host, "--port", str(self.port), "--accounts", str(self.n_accounts),
               "--balance", str(self.balance_eth), "--chain-id", str(self.chain_id), "--mnemonic", ANVIL_MNEMONIC]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
        with open(self.log_path, "wb") as log:
            # Own session: a terminal's Ctrl-C reaches only us, and we stop anvil in order.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         preexec_fn=_pdeathsig if sys.platform == "linux" else None)
        atexit.register(self.stop)
        try:
            self._wait_listening()
            self._wait_rpc()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
        except OSError:
            return ""

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert self.proc is not None and self.log_path is not None
        while time.monotonic() < deadline:
            m = _LISTEN.search(self.log_path.read_text(errors="replace"))  # small until it listens
            if m:
                self.rpc_url = f"http://{m.group(1)}:{m.group(2)}"
                return
            if self.proc.poll() is not None:
                raise LocalChainError(f"anvil exited with code {self.proc.returncode} before listening:\n{self._log_tail()}")
            time.sleep(0.02)
        raise LocalChainError(f"anvil did not print 'Listening on' within {self.startup_timeout:g} s:\n{self._log_tail()}")

    def _wait_rpc(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while True:
            try:
                r = requests.post(self.rpc_url, json=body, timeout=2)
                if r.ok and int(r.json()["result"], 16) == self.chain_id:
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise LocalChainError(f"anvil at {self.rpc_url} does not answer JSON-RPC:\n{self._log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the anvil PID, SIGKILL after 5 s. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    # anvil-specific helpers (tests and the demo move time past windows)
    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        r = requests.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
                          timeout=10)
        data = r.json()
        if "error" in data:
            raise LocalChainError(f"{method} failed: {data['error']}")
        return data["result"]

    def increase_time(self, seconds: int) -> None:
        """Advance the chain clock by `seconds` and mine a block so views see the new time."""
        self.rpc("evm_increaseTime", [int(seconds)])
        self.rpc("evm_mine")

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        if not self.rpc("evm_revert", [snapshot_id]):
            raise LocalChainError(f"evm_revert to {snapshot_id} failed (snapshots are single-use)")

    def __enter__(self) -> "LocalChain":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
