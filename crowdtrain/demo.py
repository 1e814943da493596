"""`crowdtrain demo`: the whole market end to end on one machine, in separate processes.

anvil with the contracts deployed; a coordinator (`crowdtrain coordinator serve`, SQLite in a
temp dir, its embedded Redis, settling with dev account 2's key); the owner (account 1)
posting a job on the packed standard-library dataset; two honest workers (accounts 3, 4)
staking and training; one verifier (account 5) staking and auditing. The demo waits for the
job to complete, lets the challenge windows close, has the workers claim, the owner
download the model and close the job, and prints a summary. Every process logs to a file
under the printed temp directory; a failure prints the tail of the relevant log.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
OWNER, COORD, WORKERS, VERIFIER = 1, 2, (3, 4), 5
TX_RE = re.compile(r"0x[0-9a-fA-F]{64}")
CLAIM_RE = re.compile(r"^\s+claimed .* in tx (0x[0-9a-fA-F]{64})", re.MULTILINE)  # worker claim's per-unit lines


class DemoError(RuntimeError):
    """A demo step failed; the message names the step and carries the tail of its log."""


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """spec: job spec TOML (its `dataset` is replaced by the packed stdlib's hash when they differ);
    challenge_window_s: seconds per round verifiers may challenge (the demo waits them out);
    timeout_s: seconds to wait for the job to complete; port: anvil RPC port (0 = any)."""
    spec: Path = ROOT / "examples" / "tiny-mlp.toml"
    challenge_window_s: int = 10
    timeout_s: float = 600.0
    port: int = 0
    keep_running: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class Proc:
    """A long-running `crowdtrain ...` process; stdout+stderr go to `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", "PYTHONUNBUFFERED": "1", **env}
        with open(self.log, "wb") as out:
            # own process group: a Ctrl-C in the terminal reaches only the demo, which stops us in order
            self.p = subprocess.Popen([sys.executable, "-m", "crowdtrain.cli", *args], cwd=ROOT, env=full_env,
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after `timeout` s (by PID)."""
        if not self.alive():
            return
        self.p.terminate()
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)


class Demo:
    def __init__(self, cfg: DemoConfig, console: Console) -> None:
        self.cfg, self.console = cfg, console
        self.tmp = Path(tempfile.mkdtemp(prefix="crowdtrain-demo-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.procs: list[Proc] = []
        self.net: Any = None
        self.url = ""
        self.t0 = time.monotonic()
        self.money: Callable[[int], str] = str  # token amount -> text; set once the chain is up

    # ---- helpers ---------------------------------------------------------------------
    def say(self, msg: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.t0:6.1f} s[/] {msg}", soft_wrap=True)

    def env(self, who: int) -> dict[str, str]:
        return {"CROWDTRAIN_PRIVATE_KEY": self.net.dev_accounts[who].private_key}

    def address(self, who: int) -> str:
        return str(self.net.dev_accounts[who].address)

    def chain_args(self) -> list[str]:
        return ["--rpc-url", self.net.rpc_url, "--deployment", str(self.tmp / "deployments" / "31337.json")]

    def common(self) -> list[str]:
        return ["--coordinator-url", self.url, *self.chain_args()]

    def cli(self, name: str, who: int | None, args: list[str], timeout: float = 300) -> str:
        """Run one command to completion (log in `<logs>/<name>.log`); its output, or DemoError."""
        log = self.logs / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", **(self.env(who) if who is not None else {})}
        with open(log, "wb") as out:
            try:
                rc = subprocess.run([sys.executable, "-m", "crowdtrain.cli", *args], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0:
            raise DemoError(f"`crowdtrain {' '.join(args[:2])}` failed (exit {rc}); log {log}:\n{tail(log)}")
        return log.read_text(errors="replace")

    def start(self, name: str, who: int, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, args, env={**self.env(who), **(extra_env or {})}, log_dir=self.logs)
        self.procs.append(p)
        return p

    def get(self, path: str) -> Any:
        r = httpx.get(self.url + path, timeout=10)
        r.raise_for_status()
        return r.json()

    def check_alive(self) -> None:
        for p in self.procs:  # an agent that finished its work cleanly (exit 0) is no failure
            if not p.alive() and (p.p.returncode != 0 or p.name == "coordinator"):
                raise DemoError(f"{p.name} exited (code {p.p.returncode}); log {p.log}:\n{tail(p.log)}")

    def wait_for(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = pred()
            except httpx.HTTPError:
                v = None
            if v:
                return v
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not reached within {timeout:.0f} s (logs in {self.logs})")
            time.sleep(0.3)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    # ---- the scenario ------------------------------------------------------------------
    def bring_up(self) -> None:
        from deploy.devnet import start_local_market

        self.say(f"working directory {self.tmp} (logs in {self.logs})")
        self.net = start_local_market(port=self.cfg.port, save_dir=self.tmp / "deployments")
        self.say(f"anvil at {self.net.rpc_url}; Market {self.net.deployment.address('Market')}")
        from crowdtrain.commands.chain import print_deployment, print_dev_accounts  # the same tables as `chain up`

        print_deployment(self.net.deployment)
        print_dev_accounts(self.net, show_keys=False)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        coord_env = {"CROWDTRAIN_COORD_PRIVATE_KEY": self.net.dev_accounts[COORD].private_key,
                     "CROWDTRAIN_COORD_CHAIN_POLL_INTERVAL_S": "0.5", "CROWDTRAIN_COORD_CHAIN_CACHE_TTL_S": "0"}
        self.start("coordinator", COORD, ["coordinator", "serve", "--port", str(port), "--data-dir",
                                          str(self.tmp / "coordinator"), "--rpc-url", self.net.rpc_url,
                                          "--market-address", self.net.deployment.address("Market"), "--migrate"],
                   extra_env=coord_env)
        self.wait_for(lambda: httpx.get(self.url + "/health", timeout=1).status_code == 200, 90, "coordinator up")
        self.say(f"coordinator at {self.url} (SQLite + embedded Redis under {self.tmp / 'coordinator'})")

    def prepare_spec(self) -> tuple[Path, Path]:
        """Pack the stdlib dataset; a copy of the spec with its hash. Returns (spec file, dataset dir)."""
        ds_dir = self.tmp / "dataset"
        out = self.cli("dataset-pack", None, ["dataset", "pack", "--stdlib", "--out", str(ds_dir)])
        ds_hash = re.findall(r"0x[0-9a-f]{64}", out)[-1]
        lines = [f'dataset = "{ds_hash}"' if ln.startswith("dataset =") else ln
                 for ln in self.cfg.spec.read_text().splitlines()]
        spec = self.tmp / self.cfg.spec.name
        spec.write_text("\n".join(lines) + "\n")
        self.say(f"dataset packed: {ds_hash[:18]}... ({ds_dir})")
        return spec, ds_dir

    def run(self) -> None:
        from protocol.agentkit import fmt_amount
        from protocol.chain import ChainClient

        self.bring_up()
        spec, ds_dir = self.prepare_spec()
        reader = ChainClient(self.net.rpc_url, deployment=self.net.deployment)
        tok, market = reader.token, reader.market
        dec, sym = tok.decimals(), tok.symbol()
        self.money = lambda v: fmt_amount(v, dec, sym)
        for who in WORKERS:
            self.cli(f"stake-worker-{who}", who, ["worker", "stake", *self.chain_args()])
        self.cli(f"stake-verifier-{VERIFIER}", VERIFIER, ["verifier", "stake", *self.chain_args()])
        self.say("2 workers and 1 verifier staked")
        out = self.cli("job-post", OWNER, ["job", "post", str(spec), "--dataset", str(ds_dir), "--challenge-window",
                                           str(self.cfg.challenge_window_s), *self.common()])
        job_id = next(int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("job ") and "registered" in ln)
        budget = int(market.get_job(job_id)["escrow"])
        self.say(f"job {job_id} posted ({spec.name}), escrow {self.money(budget)}")
        for i, who in enumerate(WORKERS):
            self.start(f"worker-{i + 1}", who, ["worker", "run", *self.common(), "--data-dir",
                                                str(self.tmp / f"worker-{i + 1}"), "--job", str(job_id),
                                                "--poll-interval", "0.3"])
        self.start("verifier", VERIFIER, ["verifier", "run", *self.common(), "--data-dir", str(self.tmp / "verifier"),
                                          "--poll-interval", "0.5"])
        self.say("workers and verifier running")
        self.follow(job_id)
        self.console.print()
        self.say(f"job {job_id} complete; waiting for the challenge windows to close")
        rounds = self.get(f"/jobs/{job_id}/rounds")
        self.wait_for(lambda: all(int(market.get_round(job_id, r["round"])["challengeEnd"]) + 2 <= time.time()
                                  for r in rounds), 60 + 2 * self.cfg.challenge_window_s, "challenge windows closed")
        for p in [p for p in self.procs if p.name.startswith("worker")]:
            p.stop()
        accepted = self.accepted_by(job_id, rounds)
        earnings: dict[int, tuple[int, list[str]]] = {}
        for i, who in enumerate(WORKERS):
            before = tok.balance_of(self.address(who))
            out = self.cli(f"claim-worker-{i + 1}", who, ["worker", "claim", *self.common(), "--job", str(job_id)])
            earnings[who] = (tok.balance_of(self.address(who)) - before, CLAIM_RE.findall(out))
        self.say("workers claimed")
        dl = self.tmp / "download"
        self.cli("job-download", OWNER, ["job", "download", str(job_id), "--out", str(dl), *self.common()])
        before = tok.balance_of(self.address(OWNER))
        out = self.cli("job-close", OWNER, ["job", "close", str(job_id), *self.chain_args()])
        refund = tok.balance_of(self.address(OWNER)) - before
        close_tx = (TX_RE.findall(out) or ["?"])[-1]
        self.say("model downloaded, job closed")
        val = {r["round"]: r.get("val_loss") for r in self.get(f"/jobs/{job_id}/rounds")}
        self.summary(job_id, dl, accepted, earnings, refund, close_tx, val)

    def follow(self, job_id: int) -> None:
        """A live table of rounds until the coordinator reports the job complete."""
        def table() -> Table:
            job = self.get(f"/jobs/{job_id}")
            t = Table(title=f"job {job_id}: {job['status']}")
            for c in ("round", "units accepted", "settle", "val loss"):
                t.add_column(c, justify="right")
            for r in self.get(f"/jobs/{job_id}/rounds"):
                units = self.get(f"/jobs/{job_id}/rounds/{r['round']}/units")
                ok = sum(u["status"] == "accepted" for u in units)
                loss = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else "-"
                t.add_row(str(r["round"]), f"{ok}/{len(units)}", str(r.get("settle_state") or "-"), loss)
            return t

        def done() -> bool:
            job = self.get(f"/jobs/{job_id}")
            rounds = self.get(f"/jobs/{job_id}/rounds")
            return job["status"] == "complete" and all(r.get("committed_root") for r in rounds)

        deadline = time.monotonic() + self.cfg.timeout_s
        with Live(Table(), console=self.console, refresh_per_second=2, transient=False) as live:
            while True:
                try:
                    live.update(table())
                    if done():
                        return
                except httpx.HTTPError:
                    pass
                self.check_alive()
                if time.monotonic() > deadline:
                    raise DemoError(f"job {job_id} not complete within {self.cfg.timeout_s:.0f} s "
                                    f"(coordinator log {self.logs / 'coordinator.log'}):\n"
                                    f"{tail(self.logs / 'coordinator.log')}")
                time.sleep(1.0)

    def accepted_by(self, job_id: int, rounds: list[dict]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rounds:
            for u in self.get(f"/jobs/{job_id}/rounds/{r['round']}/units"):
                for res in self.get(f"/units/{u['unit_id']}/results"):
                    if res["verdict"] == "accepted":
                        out[res["worker"]] = out.get(res["worker"], 0) + 1
        return out

    def summary(self, job_id: int, dl: Path, accepted: dict[str, int], earnings: dict[int, tuple[int, list[str]]],
                refund: int, close_tx: str, val: dict[int, float | None]) -> None:
        report = json.loads((dl / "report.json").read_text())
        t = Table(title=f"job {job_id}: loss per round")
        for c in ("round", "first loss", "last loss", "val loss"):
            t.add_column(c, justify="right")
        for r in report.get("rounds", []):
            def f(k: str) -> str:
                return f"{r[k]:.4f}" if isinstance(r.get(k), (int, float)) else "-"
            v = val.get(r.get("round", -1))
            t.add_row(str(r.get("round", "?")), f("loss_first"), f("loss_last"), "-" if v is None else f"{v:.4f}")
        self.console.print(t)
        w = Table(title="workers")
        for c in ("worker", "address", "accepted", "earned", "claims"):
            w.add_column(c, no_wrap=True)
        for i, who in enumerate(WORKERS):
            gained, txs = earnings[who]
            a = self.address(who)
            w.add_row(f"worker-{i + 1}", f"{a[:8]}..{a[-4:]}", str(accepted.get(a, 0)), self.money(gained),
                      str(len(txs)))
        self.console.print(w)
        for i, who in enumerate(WORKERS):
            for tx in earnings[who][1]:
                self.console.print(f"  worker-{i + 1} claim tx {tx}", soft_wrap=True)
        first, last = report["rounds"][0].get("loss_first"), report["rounds"][-1].get("loss_last")
        self.console.print(f"rounds: {len(report['rounds'])}; training loss {first:.4f} -> {last:.4f}")
        self.console.print(f"owner refund: {self.money(refund)} (closeJob tx {close_tx})", soft_wrap=True)
        self.console.print(f"model: {dl / 'model.safetensors'}\nreport: {dl / 'report.json'}\nlogs: {self.logs}",
                           soft_wrap=True)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_demo(cfg: DemoConfig, console: Console | None = None) -> int:
    """Run the demo; 0 on success, 1 on a failed step (its log tail printed), 130 on Ctrl-C."""
    console = console or Console()
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill PID` stops everything cleanly too
    signal.signal(signal.SIGINT, _raise_interrupt)  # also when started in the background (SIGINT ignored)
    demo = Demo(cfg, console)
    code = 0
    try:
        demo.run()
        console.print("[bold green]demo complete[/]")
        if cfg.keep_running:
            for p in [p for p in demo.procs if p.name != "coordinator"]:
                p.stop()
                demo.procs.remove(p)
            console.print(f"chain {demo.net.rpc_url} and coordinator {demo.url} left up (Ctrl-C to stop)",
                          soft_wrap=True)
            while all(p.alive() for p in demo.procs) and demo.net.chain.proc.poll() is None:
                time.sleep(0.5)
            console.print("[red]the chain or the coordinator exited[/]")
    except DemoError as e:
        console.print("\n[bold red]demo failed:[/]")
        console.print(str(e), soft_wrap=True, markup=False, highlight=False)
        code = 1
    except KeyboardInterrupt:
        console.print("interrupted; stopping")
        code = 130 if not cfg.keep_running else 0
    finally:
        demo.stop_all()
        if demo.net is not None:
            demo.net.stop()
        console.print(f"all processes stopped; logs kept in {demo.logs}")
    return code
