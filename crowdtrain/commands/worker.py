"""`crowdtrain worker check | stake | run | earnings | claim | unstake` (the GPU owner).

Settings: flags > CROWDTRAIN_WORKER_* environment > --config TOML > defaults (worker/settings.py).
The key comes from --keystore (password from --password-file, $CROWDTRAIN_KEYSTORE_PASSWORD
or a prompt) or $CROWDTRAIN_PRIVATE_KEY, and is never printed.
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="GPU owner: check the machine, stake, train units, claim earnings.", no_args_is_help=True)
console = Console()

Config = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (keys = the option names)")]
CoordUrl = Annotated[Optional[str], typer.Option("--coordinator-url", help="coordinator API base URL")]
RpcUrl = Annotated[Optional[str], typer.Option("--rpc-url", help="JSON-RPC URL of the chain")]
DeploymentOpt = Annotated[Optional[Path], typer.Option("--deployment", help="deployment record JSON")]
MarketOpt = Annotated[Optional[str], typer.Option("--market-address", help="Market contract address")]
Keystore = Annotated[Optional[Path], typer.Option("--keystore", help="eth-account keystore JSON (else "
                                                  "$CROWDTRAIN_PRIVATE_KEY)")]
PasswordFile = Annotated[Optional[Path], typer.Option("--password-file", help="first line = keystore password")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="blob cache and local state")]
Jobs = Annotated[Optional[list[int]], typer.Option("--job", help="job id (repeatable); default: every job")]


def _conn(config: Optional[Path], need_key: bool = True, **flags: Any):
    """(settings, signer or None, chain client bound to the market)."""
    from protocol.agentkit import connect_chain, load_key
    from worker.settings import WorkerSettings

    s = WorkerSettings.load(config, **flags)
    signer = load_key(s) if need_key else None
    chain = connect_chain(s, signer)
    return s, signer, chain


def _fail(e: BaseException) -> typer.Exit:
    from protocol.agentkit import explain

    console.print(f"[bold red]error:[/] {explain(e)}", soft_wrap=True)
    return typer.Exit(1)


def _errors() -> tuple[type[BaseException], ...]:
    from protocol import ProtocolError
    from training import TrainingError
    from worker import WorkerError

    return (ProtocolError, TrainingError, WorkerError)


@app.command()
def check(
    job: Annotated[Optional[int], typer.Option("--job", help="check against this job's spec")] = None,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="check against a local spec TOML")] = None,
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None, data_dir: DataDir = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
) -> None:
    """Pre-flight: device, memory and disk against a job's needs; coordinator, RPC, stake."""
    import json
    import os

    from protocol.agentkit import connect_api
    from protocol.api_client import ApiError
    from protocol.spec import load_spec
    from worker.preflight import (Check, api_checks, chain_checks, dataset_size, estimate, fmt_bytes,
                                  hardware_checks)

    from protocol.agentkit import connect_chain, load_key
    from protocol.blobcache import BlobCache
    from worker.inputs import InputStore
    from worker.settings import WorkerSettings

    checks: list[Check] = []
    try:
        s = WorkerSettings.load(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                                market_address=market_address, keystore=keystore, password_file=password_file,
                                data_dir=data_dir, device=device)
        has_key = s.keystore is not None or bool(os.environ.get("CROWDTRAIN_PRIVATE_KEY"))
        signer = load_key(s) if has_key else None
        chain = connect_chain(s, signer)
        checks += chain_checks(chain, signer.address if signer else None)
        api = connect_api(s, signer)
        checks += api_checks(api, chain.chain_id)
        specs = []
        if spec_file is not None:
            specs.append((str(spec_file), load_spec(spec_file), None))
        else:
            inputs = InputStore(api, BlobCache(s.data_dir / "cache", fetch=api.download_blob))
            ids = [job] if job is not None else [j.job_id for j in api.list_jobs() if j.status == "active"]
            for j in ids:
                sp = inputs.spec(j)
                specs.append((f"job {j}", sp, inputs.cache.read(sp.dataset)))
        for name, sp, manifest in specs:
            size = dataset_size(json.loads(manifest)) if manifest else 0
            dev = sp.device if s.device == "auto" else s.device
            est = estimate(sp, dataset_bytes=size, device=dev)
            checks.append(Check(f"{name}: model", True, f"{est.params:,} parameters, state {fmt_bytes(est.state_bytes)}, "
                                f"{est.snapshots} snapshots per unit, dataset {fmt_bytes(size) if manifest else 'unknown'}"))
            checks += [Check(f"{name}: {c.name}", c.ok, c.detail)
                       for c in hardware_checks(sp, est, device=dev, data_dir=s.data_dir,
                                                memory_fraction=s.memory_fraction)]
        if not specs:
            checks.append(Check("jobs", None, "no active job at the coordinator to check against (use --spec FILE)"))
    except ApiError as e:
        checks.append(Check("coordinator", False, str(e)))
    except _errors() as e:
        raise _fail(e) from None
    t = Table(title="worker pre-flight")
    t.add_column("check")
    t.add_column("")
    t.add_column("detail")
    for c in checks:
        mark = "[green]ok[/]" if c.ok else ("[yellow]warn[/]" if c.ok is None else "[red]FAIL[/]")
        t.add_row(c.name, mark, c.detail)
    console.print(t)
    if any(c.ok is False for c in checks):
        raise typer.Exit(1)


@app.command()
def stake(
    amount: Annotated[Optional[str], typer.Argument(help="whole tokens (e.g. 100 or 12.5); default: the minimum")] = None,
    config: Config = None, rpc_url: RpcUrl = None, deployment: DeploymentOpt = None, market_address: MarketOpt = None,
    keystore: Keystore = None, password_file: PasswordFile = None,
) -> None:
    """Stake tokens as a worker (approves the Market first when needed)."""
    from protocol.agentkit import stake_tokens
    from protocol.chain import Role

    try:
        s, signer, chain = _conn(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                                 keystore=keystore, password_file=password_file)
        lines = stake_tokens(chain, Role.WORKER, amount)
    except _errors() as e:
        raise _fail(e) from None
    for line in lines:
        console.print(line, soft_wrap=True)


@app.command()
def unstake(
    amount: Annotated[Optional[str], typer.Argument(help="whole tokens to unbond; default: all active stake")] = None,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="withdraw stake whose unbonding period is over")] = False,
    config: Config = None, rpc_url: RpcUrl = None, deployment: DeploymentOpt = None, market_address: MarketOpt = None,
    keystore: Keystore = None, password_file: PasswordFile = None,
) -> None:
    """Request unbonding of worker stake, or --withdraw it after the unbonding period."""
    from protocol.agentkit import unstake_tokens
    from protocol.chain import Role

    try:
        s, signer, chain = _conn(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                                 keystore=keystore, password_file=password_file)
        lines = unstake_tokens(chain, Role.WORKER, amount, withdraw)
    except _errors() as e:
        raise _fail(e) from None
    for line in lines:
        console.print(line, soft_wrap=True)


class RichReporter:
    """Progress bar per unit (steps, loss, rate) and one result line per unit."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.task: Any = None

    def info(self, msg: str) -> None:
        self.p.console.print(f"  {msg}", soft_wrap=True)

    def warn(self, msg: str) -> None:
        self.p.console.print(f"  [yellow]warning:[/] {msg}", soft_wrap=True)

    def phase(self, text: str) -> None:
        if self.task is not None:
            self.p.update(self.task, description=text)

    def unit_started(self, grant: Any, spec: Any) -> None:
        self.p.console.print(f"job {grant.job_id} round {grant.round} unit {grant.unit}: lease {grant.lease_id} "
                             f"({spec.inner_steps} steps, {spec.device}, {spec.threads} thread(s))")
        self.task = self.p.add_task("training", total=spec.inner_steps, loss=float("nan"))

    def step(self, done: int, total: int, loss: float) -> None:
        if self.task is not None:
            self.p.update(self.task, completed=done, loss=loss)

    def unit_finished(self, o: Any) -> None:
        if self.task is not None:
            self.p.remove_task(self.task)
            self.task = None
        color = {"accepted": "green", "rejected": "red"}.get(o.status, "yellow")
        loss = f", loss {o.losses[0]:.4f} -> {o.losses[-1]:.4f}" if o.losses else ""
        took = f", {o.timing['total']:.1f} s" if "total" in o.timing else ""
        self.p.console.print(f"  [{color}]{o.status}[/]: {o.reason}{loss}{took}", soft_wrap=True)


@app.command()
def run(
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None, data_dir: DataDir = None, job: Jobs = None,
    device: Annotated[Optional[str], typer.Option(help="auto (the spec's) | cpu | cuda")] = None,
    max_units: Annotated[Optional[int], typer.Option(help="stop after this many submitted units")] = None,
    poll_interval: Annotated[Optional[float], typer.Option(help="seconds between claims when nothing is free")] = None,
    fault: Annotated[Optional[str], typer.Option(hidden=True, help="TEST ONLY: train dishonestly (training.adversary)")] = None,
    step_delay: Annotated[float, typer.Option(hidden=True, help="TEST ONLY: sleep seconds after each step")] = 0.0,
) -> None:
    """Claim units, train them, upload, sign and submit; Ctrl-C finishes the unit, twice releases it."""
    from protocol.agentkit import connect_api
    from protocol.blobcache import BlobCache
    from protocol.chain import Role
    from training.adversary import Fault
    from worker.agent import StopSignal, WorkerAgent
    from worker.inputs import InputStore

    try:
        flt = Fault(fault) if fault else None
    except ValueError:
        console.print(f"[red]error:[/] unknown fault {fault!r}; one of {', '.join(f.value for f in Fault)}")
        raise typer.Exit(2)
    try:
        s, signer, chain = _conn(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                                 market_address=market_address, keystore=keystore, password_file=password_file,
                                 data_dir=data_dir, jobs=job, device=device, max_units=max_units,
                                 poll_interval_s=poll_interval)
        m = chain.market
        need, have = m.min_stake(Role.WORKER), int(m.get_stake(signer.address, Role.WORKER)["active"])
        if have < max(need, 1):
            raise _fail(RuntimeError(f"{signer.address} has {have} active worker stake, the Market requires "
                                     f"{max(need, 1)}: run `crowdtrain worker stake` first"))
        api = connect_api(s, signer, chain=chain)
    except _errors() as e:
        raise _fail(e) from None
    console.print(f"worker {signer.address} (key from {signer.source}) on chain {chain.chain_id}, coordinator "
                  f"{s.coordinator_url}" + (f" [bold red]FAULT {flt.value}[/]" if flt else ""))
    stop = StopSignal()

    def on_sigint(*_: object) -> None:
        first = not stop.after_unit.is_set()
        stop.request()
        console.print("[yellow]stopping after this unit (Ctrl-C again to stop now and release the lease)[/]"
                      if first else "[yellow]stopping now; releasing the lease[/]")

    def on_sigterm(*_: object) -> None:
        stop.after_unit.set()
        stop.now.set()

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    cache = BlobCache(s.data_dir / "cache", fetch=api.download_blob)
    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        agent = WorkerAgent(settings=s, account=signer.account, chain_id=chain.chain_id, market_address=m.address,
                            api=api, inputs=InputStore(api, cache), reporter=RichReporter(progress), fault=flt,
                            step_delay_s=step_delay)
        outcomes = agent.run(stop)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    console.print("done: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no units"))


@app.command()
def earnings(
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None, job: Jobs = None,
    address: Annotated[Optional[str], typer.Option(help="whose earnings (default: the key's address)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON (full hashes, base units)")] = False,
) -> None:
    """Per unit: pending, claimable, claimed or slashed, with the round root and the settling tx."""
    from protocol.agentkit import connect_api, fmt_amount, short_hex
    from worker.earnings import earnings as compute

    try:
        s, signer, chain = _conn(config, need_key=address is None, coordinator_url=coordinator_url, rpc_url=rpc_url,
                                 deployment=deployment, market_address=market_address, keystore=keystore,
                                 password_file=password_file)
        who = address or signer.address
        api = connect_api(s, None, chain=chain)
        rows = compute(api, chain, who, jobs=job)
        dec, sym = chain.token.decimals(), chain.token.symbol()
    except _errors() as e:
        raise _fail(e) from None
    if as_json:
        import json

        typer.echo(json.dumps([{"job_id": r.job_id, "round": r.round, "unit": r.unit, "amount": str(r.amount),
                                "status": r.status, "detail": r.detail, "root": r.root, "commit_tx": r.commit_tx,
                                "settle_tx": r.settle_tx, "leaf": r.leaf.leaf if r.leaf else None} for r in rows],
                              indent=1))
        return
    t = Table(title=f"earnings of {who}")
    for col in ("job", "round", "unit", "amount", "status", "detail", "round root", "commit tx", "claim / slash tx"):
        t.add_column(col, no_wrap=col not in ("detail",))
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.status] = totals.get(r.status, 0) + r.amount
        t.add_row(str(r.job_id), str(r.round), str(r.unit), fmt_amount(r.amount, dec, sym), r.status, r.detail,
                  short_hex(r.root), short_hex(r.commit_tx), short_hex(r.settle_tx))
    console.print(t)
    console.print("totals: " + (", ".join(f"{k} {fmt_amount(v, dec, sym)}" for k, v in sorted(totals.items()))
                                or "nothing yet"))


@app.command()
def claim(
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None, job: Jobs = None,
) -> None:
    """Claim every finalized, unclaimed leaf (finalizing rounds whose window closed) with proofs."""
    from protocol.agentkit import connect_api, describe_tx, fmt_amount
    from worker.earnings import claim_all

    try:
        s, signer, chain = _conn(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                                 market_address=market_address, keystore=keystore, password_file=password_file)
        api = connect_api(s, signer, chain=chain)
        dec, sym = chain.token.decimals(), chain.token.symbol()
        done = claim_all(api, chain, signer.address, jobs=job, say=lambda m: console.print(f"  {m}", soft_wrap=True))
    except _errors() as e:
        raise _fail(e) from None
    for row, tx in done:
        console.print(describe_tx(tx, f"claimed {fmt_amount(row.amount, dec, sym)} for job {row.job_id} round "
                                      f"{row.round} unit {row.unit}"), soft_wrap=True)
    total = sum(r.amount for r, _ in done)
    console.print(f"claimed {len(done)} unit(s), {fmt_amount(total, dec, sym)} in total" if done
                  else "nothing claimable yet (see `crowdtrain worker earnings`)")
