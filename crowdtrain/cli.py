"""`crowdtrain` console command. Each command group lives in crowdtrain/commands/<group>.py."""
from __future__ import annotations

import typer

from crowdtrain.commands import chain, coordinator, dataset, job, train, verifier, worker

app = typer.Typer(
    name="crowdtrain",
    help="An open marketplace for verified ML training compute.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold private keys
)
app.command("demo", help="Bring up a local chain, deploy the market and run the end-to-end demo.")(chain.demo)
app.add_typer(chain.app, name="chain")
app.add_typer(dataset.app, name="dataset")
app.add_typer(train.app, name="train")
app.add_typer(coordinator.app, name="coordinator")
app.add_typer(job.app, name="job")
app.add_typer(worker.app, name="worker")
app.add_typer(verifier.app, name="verifier")
app.command("calibrate", help="Alias of `crowdtrain train calibrate`.")(train.calibrate)


if __name__ == "__main__":
    app()
