"""`crowdtrain job post | status | download | close`: the model owner's commands.

post      validate the spec, take (--dataset DIR) or pack (--pack PATHS / --stdlib) the
          dataset and check it hashes to the spec's `dataset`; build G_0 from the spec seed;
          escrow the budget on chain (approve + postJob with the spec hash); upload the
          dataset manifest and shards and G_0 to the coordinator; register the job.
status    rounds, units, training loss (from the accepted units' traces), spend, disputes.
download  the final model G_R (safetensors), recomputed from G_0 and every round's accepted
          outputs and checked against the coordinator's checkpoints, and a report (JSON).
close     refund the unspent budget (closeJob; again later to sweep revoked payouts).
Logic lives in crowdtrain/owner.py; this module only parses flags and prints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Model owner: post a training job, watch it, download the model, close it.",
                  no_args_is_help=True)
console = Console()

Config = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (keys = the long option names)")]
CoordUrl = Annotated[Optional[str], typer.Option("--coordinator-url", help="coordinator API base URL")]
RpcUrl = Annotated[Optional[str], typer.Option("--rpc-url", help="JSON-RPC URL of the chain")]
DeploymentOpt = Annotated[Optional[Path], typer.Option("--deployment", help="deployment record JSON")]
MarketOpt = Annotated[Optional[str], typer.Option("--market-address", help="Market contract address")]
Keystore = Annotated[Optional[Path], typer.Option("--keystore", help="eth-account keystore JSON of the owner "
                                                  "(else $CROWDTRAIN_PRIVATE_KEY)")]
PasswordFile = Annotated[Optional[Path], typer.Option("--password-file", help="first line = keystore password")]


def _settings(config: Optional[Path], **flags: object):
    from crowdtrain.owner import OwnerSettings

    return OwnerSettings.load(config, **flags)


def _fail(e: BaseException) -> typer.Exit:
    from protocol.agentkit import explain

    console.print(f"[bold red]error:[/] {explain(e)}", soft_wrap=True)
    return typer.Exit(1)


@app.command()
def post(
    spec_file: Annotated[Path, typer.Argument(help="job spec TOML")],
    dataset: Annotated[Optional[Path], typer.Option(help="an already packed dataset directory")] = None,
    pack: Annotated[Optional[list[Path]], typer.Option(help="files/directories to pack as the dataset")] = None,
    stdlib: Annotated[bool, typer.Option("--stdlib", help="pack this Python's standard library (the default dataset)")] = False,
    challenge_window: Annotated[Optional[int], typer.Option(help="seconds verifiers have to challenge a round")] = None,
    deadline: Annotated[Optional[int], typer.Option(help="seconds from now until the job may be closed anyway")] = None,
    coordinator_address: Annotated[Optional[str], typer.Option(help="address that commits rounds "
                                                               "(default: the coordinator's GET /info)")] = None,
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None, keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Escrow a job's budget on chain, upload its inputs, register it with the coordinator."""
    from crowdtrain import owner
    from protocol import ProtocolError
    from protocol.agentkit import describe_tx, fmt_amount, load_key
    from protocol.spec import load_spec
    from training import TrainingError

    try:
        s = _settings(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                      market_address=market_address, keystore=keystore, password_file=password_file,
                      challenge_window_s=challenge_window, deadline_s=deadline,
                      coordinator_address=coordinator_address)
        spec = load_spec(spec_file)
        signer = load_key(s)
        console.print(f"owner {signer.address} (key from {signer.source})")
        ds_dir = owner.resolve_dataset(spec, dataset_dir=dataset, pack=pack or [], stdlib=stdlib,
                                       work_dir=s.data_dir, log=console.print)
        posted = owner.post_job(s, signer, spec, ds_dir, log=lambda m: console.print(f"  {m}", soft_wrap=True))
    except (ProtocolError, TrainingError, owner.OwnerError) as e:
        raise _fail(e) from None
    console.print(describe_tx(posted.tx, f"postJob escrowed {fmt_amount(posted.budget, posted.decimals, posted.symbol)}"),
                  soft_wrap=True)
    console.print(f"[bold green]job {posted.job_id}[/] registered with {s.coordinator_url}: "
                  f"{spec.rounds} rounds x {spec.units_per_round} units, "
                  f"{fmt_amount(spec.payment.reward_per_unit, posted.decimals, posted.symbol)} per unit")
    console.print(f"  watch: crowdtrain job status {posted.job_id}   |   {s.coordinator_url}/jobs/{posted.job_id}   "
                  f"|   live events {s.coordinator_url}/events?job_id={posted.job_id}", soft_wrap=True)


@app.command()
def status(
    job_id: Annotated[int, typer.Argument(help="on-chain job id")],
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None,
) -> None:
    """Rounds, units, training loss, spend and disputes of a job."""
    from crowdtrain import owner
    from protocol import ProtocolError
    from protocol.agentkit import fmt_amount, short_hex

    try:
        s = _settings(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                      market_address=market_address)
        st = owner.job_status(s, job_id)
    except (ProtocolError, owner.OwnerError) as e:
        raise _fail(e) from None
    amt = lambda v: fmt_amount(v, st.decimals, st.symbol)  # noqa: E731
    console.print(f"[bold]job {job_id}[/] owner {st.owner}: coordinator says [bold]{st.coordinator_status}[/], "
                  f"chain says [bold]{st.chain_status}[/]")
    t = Table(title="rounds")
    for col in ("round", "status", "accepted/units", "train loss (first -> last step)", "committed root", "commit tx",
                "chain"):
        t.add_column(col, no_wrap=True)
    for r in st.rounds:
        loss = f"{r.loss_first:.4f} -> {r.loss_last:.4f}" if r.loss_last is not None else "-"
        t.add_row(str(r.round), r.status, f"{r.accepted}/{r.units}", loss, short_hex(r.root), short_hex(r.commit_tx),
                  r.chain_status)
    console.print(t)
    console.print(f"budget {amt(st.budget)}: committed to rounds {amt(st.committed)}, claimed by workers "
                  f"{amt(st.claimed)}, escrow left {amt(st.escrow)}, units committed {st.units_committed}/{st.max_units}")
    if st.disputes:
        d = Table(title="disputes")
        for col in ("id", "round", "unit", "worker", "challenger", "status", "ruling"):
            d.add_column(col)
        for x in st.disputes:
            d.add_row(str(x.dispute_id), str(x.round), str(x.unit), short_hex(x.worker), short_hex(x.challenger),
                      x.status, x.ruling)
        console.print(d)
    else:
        console.print("no disputes")


@app.command()
def download(
    job_id: Annotated[int, typer.Argument(help="on-chain job id")],
    out: Annotated[Path, typer.Option("--out", help="directory for model.safetensors and report.json")] = Path("."),
    config: Config = None, coordinator_url: CoordUrl = None, rpc_url: RpcUrl = None,
    deployment: DeploymentOpt = None, market_address: MarketOpt = None,
) -> None:
    """The final model (safetensors, recomputed from the accepted work) and a training report (JSON)."""
    from crowdtrain import owner
    from protocol import ProtocolError

    try:
        s = _settings(config, coordinator_url=coordinator_url, rpc_url=rpc_url, deployment=deployment,
                      market_address=market_address)
        model, report = owner.download(s, job_id, out, log=lambda m: console.print(f"  {m}", soft_wrap=True))
    except (ProtocolError, owner.OwnerError) as e:
        raise _fail(e) from None
    console.print(f"model  {model}  ({model.stat().st_size:,} bytes: G_R recomputed from the accepted outputs, "
                  "every round's checkpoint checked)")
    console.print(f"report {report}")


@app.command()
def close(
    job_id: Annotated[int, typer.Argument(help="on-chain job id")],
    config: Config = None, rpc_url: RpcUrl = None, deployment: DeploymentOpt = None, market_address: MarketOpt = None,
    keystore: Keystore = None, password_file: PasswordFile = None,
) -> None:
    """Refund the job's unspent budget to its owner (after completion or the deadline)."""
    from crowdtrain import owner
    from protocol import ProtocolError
    from protocol.agentkit import describe_tx, fmt_amount, load_key

    try:
        s = _settings(config, rpc_url=rpc_url, deployment=deployment, market_address=market_address,
                      keystore=keystore, password_file=password_file)
        refund, tx, (dec, sym) = owner.close_job(s, load_key(s), job_id)
    except (ProtocolError, owner.OwnerError) as e:
        raise _fail(e) from None
    console.print(describe_tx(tx, f"closeJob refunded {fmt_amount(refund, dec, sym)}"), soft_wrap=True)
