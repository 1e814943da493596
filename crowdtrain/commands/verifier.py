"""`crowdtrain verifier stake | run | status | unstake` (the verifier).

Settings: flags > CROWDTRAIN_VERIFIER_* environment > --config TOML > defaults
(verifier/settings.py). The key comes from --keystore or $CROWDTRAIN_PRIVATE_KEY.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Verifier: stake, audit committed rounds, challenge faults, serve on juries.",
                  no_args_is_help=True)
console = Console()

Config = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (keys = the option names)")]
CoordUrl = Annotated[Optional[str], typer.Option("--coordinator-url", help="coordinator API base URL")]
RpcUrl = Annotated[Optional[str], typer.Option("--rpc-url", help="JSON-RPC URL of the chain")]
DeploymentOpt = Annotated[Optional[Path], typer.Option("--deployment", help="deployment record JSON")]
MarketOpt = Annotated[Optional[str], typer.Option("--market-address", help="Market contract address")]
Keystore = Annotated[Optional[Path], typer.Option("--keystore", help="eth-account keystore JSON (else "
                                                  "$CROWDTRAIN_PRIVATE_KEY)")]
PasswordFile = Annotated[Optional[Path], typer.Option("--password-file", help="first line = keystore password")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="blob cache and the state file")]


def _conn(config: Optional[Path], **flags: Any):
    from protocol.agentkit import connect_chain, load_key
    from verifier.settings import VerifierSettings

    s = VerifierSettings.load(config, **flags)
    signer = load_key(s)
    return s, signer, connect_chain(s, signer)


def _fail(e: BaseException) -> typer.Exit:
    from protocol.agentkit import explain

    console.print(f"[bold red]error:[/] {explain(e)}", soft_wrap=True)
    return typer.Exit(1)


def _errors() -> tuple[type[BaseException], ...]:
    from protocol import ProtocolError
    from training import TrainingError
    from verifier import VerifierError

    return (ProtocolError, TrainingError, VerifierError)


@app.command()
def stake(
    amount: Annotated[Optional[str], typer.Argument(help="whole tokens; default: up to the minimum")] = None,
    config: Config = None, rpc_url: RpcUrl = None, deployment: DeploymentOpt = None, market_address: MarketOpt = None,
    keystore: Keystore = None, password_file: PasswordFile = None,
) -> None:
    """Stake tokens as a verifier (needed to challenge and to be drawn for juries)."""
    from protocol.agentkit import stake_tokens
    from protocol.chain import Role

    try:
        _, _, chain = _conn(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                            keystore=keystore, password_file=password_file)
        lines = stake_tokens(chain, Role.VERIFIER, amount)
        lines.append("eligible for juries: " + str(chain.market.is_eligible_verifier(chain.address)).lower())
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
    """Request unbonding of verifier stake, or --withdraw it after the unbonding period."""
    from protocol.agentkit import unstake_tokens
    from protocol.chain import Role

    try:
        _, _, chain = _conn(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                            keystore=keystore, password_file=password_file)
        lines = unstake_tokens(chain, Role.VERIFIER, amount, withdraw)
    except _errors() as e:
        raise _fail(e) from None
    for line in lines:
        console.print(line, soft_wrap=True)


@app.command()
def run(
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None, data_dir: DataDir = None,
    job: Annotated[Optional[list[int]], typer.Option("--job", help="audit only these jobs (repeatable)")] = None,
    audit: Annotated[Optional[bool], typer.Option("--audit/--no-audit", help="replay and challenge")] = None,
    jury: Annotated[Optional[bool], typer.Option("--jury/--no-jury", help="vote when drawn")] = None,
    segments: Annotated[Optional[int], typer.Option(help="segments replayed per unit: 0 = all (default: the spec's m)")] = None,
    poll_interval: Annotated[Optional[float], typer.Option(help="seconds between reads of new chain events")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (the spec's) | cpu | cuda")] = None,
) -> None:
    """Watch committed rounds, replay sampled segments, challenge faults, serve on juries (Ctrl-C stops)."""
    from protocol.agentkit import connect_api
    from protocol.blobcache import BlobCache
    from protocol.chain import Role
    from verifier.agent import VerifierAgent

    try:
        s, signer, chain = _conn(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                                 market_address=market_address, keystore=keystore, password_file=password_file,
                                 data_dir=data_dir, jobs=job, audit=audit, jury=jury, audit_segments=segments,
                                 poll_interval_s=poll_interval, device=device)
        api = connect_api(s, signer, chain=chain)
        m = chain.market
        need, have = m.min_stake(Role.VERIFIER), int(m.get_stake(signer.address, Role.VERIFIER)["active"])
        agent = VerifierAgent(settings=s, chain=chain, api=api, cache=BlobCache(s.data_dir / "cache",
                                                                                 fetch=api.download_blob),
                              say=lambda msg: console.print(msg, soft_wrap=True))
    except _errors() as e:
        raise _fail(e) from None
    roles = [r for r, on in (("audit", s.audit), ("jury", s.jury), ("keeper", s.keeper)) if on]
    console.print(f"verifier {signer.address} (key from {signer.source}) on chain {chain.chain_id}: "
                  f"{', '.join(roles)}; segments per unit: "
                  f"{'all' if s.audit_segments == 0 else s.audit_segments or 'the spec m'}")
    if have < need:
        console.print(f"[yellow]warning:[/] active verifier stake {have} < {need}: faults will be reported but not "
                      "challenged, and juries will not draw this account (`crowdtrain verifier stake`)")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agent.run(stop)
    console.print("stopped; pending reveals are kept in " + str(agent.state.path))


@app.command()
def status(
    config: Config = None, rpc_url: RpcUrl = None, deployment: DeploymentOpt = None, market_address: MarketOpt = None,
    keystore: Keystore = None, password_file: PasswordFile = None, data_dir: DataDir = None,
) -> None:
    """Stake, payouts and rewards, audits, challenges and votes of this verifier."""
    from protocol.agentkit import fmt_amount, short_hex
    from protocol.chain import Role
    from verifier.state import VerifierState

    try:
        s, signer, chain = _conn(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                                 keystore=keystore, password_file=password_file, data_dir=data_dir)
        m, j, tok = chain.market, chain.jury, chain.token
        dec, sym = tok.decimals(), tok.symbol()
        st = m.get_stake(signer.address, Role.VERIFIER)
        state = VerifierState.open(s.data_dir, chain_id=chain.chain_id, market=m.address, account=signer.address)
        lines = [f"verifier {signer.address}: active stake {fmt_amount(int(st['active']), dec, sym)} (minimum "
                 f"{fmt_amount(m.min_stake(Role.VERIFIER), dec, sym)}), unbonding "
                 f"{fmt_amount(int(st['unbonding']), dec, sym)}; jury pool: "
                 f"{'yes' if m.is_eligible_verifier(signer.address) else 'no'}",
                 f"wallet {fmt_amount(tok.balance_of(signer.address), dec, sym)}; dispute payouts to withdraw "
                 f"{fmt_amount(m.payout_of(signer.address), dec, sym)}; juror rewards to withdraw "
                 f"{fmt_amount(j.reward_of(signer.address), dec, sym)}",
                 f"events read up to block {state.cursor}; {len(state.rounds)} committed round(s) queued for audit"]
        challenges = []
        for key, a in sorted(state.audits.items()):
            if a.get("dispute"):
                d = m.get_dispute(int(a["dispute"]))
                challenges.append((key, a, d))
    except _errors() as e:
        raise _fail(e) from None
    for line in lines:
        console.print(line, soft_wrap=True)
    counts: dict[str, int] = {}
    for a in state.audits.values():
        counts[a["verdict"]] = counts.get(a["verdict"], 0) + 1
    console.print("audits: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none yet"))
    if challenges:
        t = Table(title="challenges")
        for col in ("job/round/unit", "dispute", "worker", "status", "ruling", "tx"):
            t.add_column(col, no_wrap=col == "tx")
        names = {0: "open", 1: "open", 2: "ruled", 3: "timed out"}
        for key, a, d in challenges:
            t.add_row(key, str(a["dispute"]), short_hex(a["worker"]), names.get(int(d["status"]), str(d["status"])),
                      str(d["ruling"]) if int(d["status"]) >= 2 else "-", short_hex(a.get("tx")))
        console.print(t)
    if state.votes:
        t = Table(title="jury votes")
        for col in ("dispute", "disputed", "vote", "committed", "revealed", "note"):
            t.add_column(col)
        for k, v in sorted(state.votes.items(), key=lambda x: int(x[0])):
            t.add_row(k, v.get("where", ""), str(v.get("choice")), "yes" if v.get("commit_tx") else "no",
                      "yes" if v.get("revealed_tx") else "no", v.get("closed", "") or v.get("reason", "")[:60])
        console.print(t)
