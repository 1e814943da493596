"""`crowdtrain chain up | deploy` and `crowdtrain demo` (local chain, deployment)."""
from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from deploy import DeployError
from protocol import ProtocolError

app = typer.Typer(help="Local chain and contract deployment.", no_args_is_help=True)
console = Console()


def _fail(e: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {e}")
    return typer.Exit(1)


def _fmt_units(amount: int, decimals: int) -> str:
    whole, frac = divmod(amount, 10**decimals)
    return f"{whole:,}" + (f".{str(frac).rjust(decimals, '0').rstrip('0')}" if frac else "")


def print_deployment(dep: "object", *, title: str = "Deployment") -> None:
    from protocol.chain.deployment import Deployment

    assert isinstance(dep, Deployment)
    t = Table(title=f"{title} on chain {dep.chain_id}")
    t.add_column("contract", no_wrap=True)
    t.add_column("address", no_wrap=True, min_width=42)
    t.add_column("block", justify="right")
    for name, rec in sorted(dep.contracts.items()):
        t.add_row(name, rec.address, str(rec.block_number))
    console.print(t)
    for name, rec in sorted(dep.contracts.items()):
        if rec.tx_hash:
            url = dep.tx_url(rec.tx_hash)
            console.print(f"  {name} deployed by tx {rec.tx_hash}" + (f"  {url}" if url else ""), soft_wrap=True)


def print_dev_accounts(net: "object", *, show_keys: bool = True) -> None:
    from deploy.devnet import LocalMarket

    assert isinstance(net, LocalMarket)
    dec = net.config.token_decimals
    t = Table(title="Funded dev accounts (anvil's default mnemonic)")
    t.add_column("#", justify="right")
    t.add_column("address", no_wrap=True, min_width=42)
    t.add_column("ETH", justify="right")
    t.add_column(net.config.token_symbol, justify="right")
    for b in net.balances():
        eth = f"{b['eth'] / 10**18:,.4f}"
        t.add_row(str(b["index"]), b["address"], eth, _fmt_units(b["token"], dec))
    console.print(t)
    if show_keys:
        k = Table(title="Their private keys: PUBLIC anvil test keys, known to everyone; never send real funds")
        k.add_column("#", justify="right")
        k.add_column("private key", no_wrap=True, min_width=66)
        for a in net.dev_accounts:
            k.add_row(str(a.index), a.private_key)
        console.print(k)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _wait_for_interrupt(net: "object") -> None:
    from deploy.devnet import LocalMarket

    assert isinstance(net, LocalMarket)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill PID` stops anvil cleanly too
    signal.signal(signal.SIGINT, _raise_interrupt)  # also when started in the background (SIGINT ignored)
    console.print(f"[green]local chain running at {net.rpc_url}[/] (Ctrl-C to stop)")
    try:
        while net.chain.proc is not None and net.chain.proc.poll() is None:
            time.sleep(0.5)
        console.print("[red]anvil exited[/]")
    except KeyboardInterrupt:
        console.print("stopping anvil")


@app.command("up")
def up(
    port: Annotated[int, typer.Option(help="RPC port (0 = any free port)")] = 8545,
    accounts: Annotated[int, typer.Option(help="funded dev accounts")] = 10,
    show_keys: Annotated[bool, typer.Option(help="print the dev accounts' public test keys")] = True,
) -> None:
    """Start anvil, deploy TestToken + Market + JuryArbiter, fund the dev accounts; run until Ctrl-C."""
    from deploy.devnet import start_local_market

    try:
        net = start_local_market(port=port, accounts=accounts, log=lambda m: console.print(f"  {m}", soft_wrap=True))
    except (ProtocolError, DeployError) as e:
        raise _fail(e) from None
    with net:
        print_deployment(net.deployment)
        print_dev_accounts(net, show_keys=show_keys)
        _wait_for_interrupt(net)


@app.command("deploy")
def deploy_cmd(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="JSON-RPC URL of the target chain")],
    keystore: Annotated[Optional[Path], typer.Option(help="eth-account keystore JSON of the deployer")] = None,
    password_file: Annotated[Optional[Path], typer.Option(help="file whose first line is the keystore password")] = None,
    token: Annotated[Optional[str], typer.Option(help="existing ERC-20 to pay in (default: TestToken on local chains)")] = None,
    test_token: Annotated[bool, typer.Option("--test-token", help="deploy the freely mintable TestToken on a non-local chain")] = False,
    explorer: Annotated[Optional[str], typer.Option(help="block explorer base URL for transaction links")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="where to write <chainId>.json (default deploy/deployments)")] = None,
    min_worker_stake: Annotated[Optional[int], typer.Option(help="whole tokens")] = None,
    min_verifier_stake: Annotated[Optional[int], typer.Option(help="whole tokens")] = None,
    challenge_bond: Annotated[Optional[int], typer.Option(help="whole tokens")] = None,
    unbonding_period: Annotated[Optional[int], typer.Option(help="seconds")] = None,
    dispute_timeout: Annotated[Optional[int], typer.Option(help="seconds")] = None,
    jury_size: Annotated[Optional[int], typer.Option()] = None,
    commit_period: Annotated[Optional[int], typer.Option(help="seconds")] = None,
    reveal_period: Annotated[Optional[int], typer.Option(help="seconds")] = None,
    connect_deadline: Annotated[float, typer.Option(help="seconds to keep retrying an unreachable RPC URL")] = 5.0,
) -> None:
    """Deploy to any RPC URL with a key from --keystore or $CROWDTRAIN_PRIVATE_KEY."""
    from dataclasses import replace

    from deploy.deploy import DeployConfig, deploy_all
    from protocol.chain.client import ChainClient
    from protocol.chain.keys import load_signer
    from protocol.chain.token import TokenApi

    try:
        signer = load_signer(keystore=keystore, password_file=password_file)
        console.print(f"deployer {signer.address} (key from {signer.source})")
        client = ChainClient(rpc_url, signer, connect_deadline=connect_deadline)
        decimals = 18
        if token:
            decimals = TokenApi(client, token).decimals()
        cfg = DeployConfig.for_chain(client.chain_id, decimals=decimals, token=token, allow_test_token=test_token,
                                     explorer=explorer)
        one = 10**decimals
        m = {k: v * one for k, v in (("min_worker_stake", min_worker_stake), ("min_verifier_stake", min_verifier_stake),
                                     ("challenge_bond", challenge_bond)) if v is not None}
        m.update({k: v for k, v in (("unbonding_period", unbonding_period), ("dispute_timeout", dispute_timeout))
                  if v is not None})
        j = {k: v for k, v in (("jury_size", jury_size), ("commit_period", commit_period),
                               ("reveal_period", reveal_period)) if v is not None}
        cfg = replace(cfg, market=replace(cfg.market, **m), jury=replace(cfg.jury, **j))
        dep = deploy_all(client, cfg, save_dir=out_dir, log=lambda msg: console.print(f"  {msg}", soft_wrap=True))
    except (ProtocolError, DeployError) as e:
        raise _fail(e) from None
    print_deployment(dep)


def demo(
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave the chain and coordinator up until Ctrl-C")] = False,
    port: Annotated[int, typer.Option(help="anvil RPC port (0 = any free port)")] = 0,
    spec: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="job spec TOML (default examples/tiny-mlp.toml; "
                                                      "examples/demo.toml = the small GPT)")] = None,
    challenge_window: Annotated[int, typer.Option(help="seconds per round verifiers may challenge")] = 10,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the job to complete")] = 600.0,
) -> None:
    """The whole market end to end: chain, coordinator, owner, 2 workers, a verifier; claims, download, close."""
    from crowdtrain.demo import DemoConfig, run_demo

    console.rule("[bold]crowdtrain demo")
    cfg = DemoConfig(port=port, keep_running=keep_running, challenge_window_s=challenge_window, timeout_s=timeout,
                     **({"spec": spec.resolve()} if spec is not None else {}))
    code = run_demo(cfg, console)
    if code:
        raise typer.Exit(code)
