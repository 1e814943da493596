"""`crowdtrain train ...` / `crowdtrain calibrate`: the training engine from the command line."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Run the training engine locally: a DiLoCo job in-process, tolerance calibration.",
                  no_args_is_help=True)
console = Console()
DEFAULT_DATA = Path("var/data/stdlib")


def _load(spec_path: Path, data: Path):
    from protocol.spec import SpecError, load_spec
    from training import DatasetError
    from training.data import load_dataset
    from training.determinism import set_determinism

    try:
        spec = load_spec(spec_path)
        ds = load_dataset(data, spec.dataset)
    except (SpecError, DatasetError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1)
    set_determinism(spec.seed, spec.threads, spec.device)
    return spec, ds


@app.command("calibrate")
def calibrate(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml", help="The job spec to calibrate."),
    data: Path = typer.Option(DEFAULT_DATA, help="Packed dataset directory (crowdtrain dataset pack)."),
    threads: str = typer.Option("1,2", help="Comma-separated thread counts verifiers may use."),
    devices: str = typer.Option("cpu", help="Comma-separated devices to include (cpu,cuda)."),
    units: int = typer.Option(2, min=1, help="Honest reference units to run (round 0)."),
    margin: float = typer.Option(10.0, min=1.0, help="Safety factor over the largest honest drift."),
) -> None:
    """Measure how far honest replays drift across thread counts / devices; print thresholds."""
    from training.calibrate import calibrate as run_calibration

    spec, ds = _load(spec_path, data)
    tcounts = tuple(int(t) for t in threads.split(",") if t.strip())
    devs = tuple(d.strip() for d in devices.split(",") if d.strip())
    with console.status(f"running {units} reference unit(s) and replaying them on {len(tcounts) * len(devs)} "
                        "configuration(s)"):
        cal = run_calibration(spec, ds, thread_counts=tcounts, devices=devs, units=units, margin=margin)
    table = Table(title=f"honest drift vs the reference ({cal.reference})")
    for col in ("replay on", "loss rel. diff", "state rel. L2", "state max |diff|"):
        table.add_column(col, justify="right")
    for name, d in cal.honest.items():
        table.add_row(name, f"{d.loss_rtol:.3g}", f"{d.state_rel_l2:.3g}", f"{d.state_max_abs:.3g}")
    d = cal.dishonest
    table.add_row("[dim]lr x 1.01 (a cheat)[/]", f"{d.loss_rtol:.3g}", f"{d.state_rel_l2:.3g}", f"{d.state_max_abs:.3g}")
    console.print(table)
    t = cal.recommended()
    if d.state_rel_l2 <= t.state_rel_l2 and d.state_max_abs <= t.state_max_abs:
        console.print("[yellow]warning:[/] a 1% learning-rate change stays inside these thresholds at the "
                      "segment end; use exact mode or a longer snapshot interval for this model")
    console.print(f"recommended (x{margin:g} margin), paste into the spec:\n")
    print(cal.to_toml())


@app.command("job")
def job(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml"),
    data: Path = typer.Option(DEFAULT_DATA, help="Packed dataset directory."),
    rounds: int = typer.Option(0, help="Rounds to run (0 = the spec's R)."),
    out: Path = typer.Option(None, help="Write the final global checkpoint (safetensors) here."),
) -> None:
    """Run a whole DiLoCo job in this process (no chain, no coordinator) and print val loss per round."""
    from protocol.hashing import to_hex
    from training.job import run_job

    spec, ds = _load(spec_path, data)
    console.print(f"spec {to_hex(spec.spec_hash())}: {spec.units_per_round} units x {spec.inner_steps} steps "
                  f"per round, {rounds or spec.rounds} round(s)")

    def on_round(rec) -> None:
        console.print(f"round {rec.round}: {len(rec.results)} unit(s), val loss {rec.eval_loss:.4f} "
                      f"nats/byte, {rec.seconds:.1f} s")

    run = run_job(spec, ds, rounds=rounds or None, on_round=on_round)
    console.print(f"initial val loss {run.initial_eval_loss:.4f} -> final {run.rounds[-1].eval_loss:.4f}")
    if out:
        out.write_bytes(run.final_global)
        console.print(f"final checkpoint: {out}")
