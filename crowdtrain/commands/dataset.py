"""`crowdtrain dataset ...` (owned by the training engine)."""
import typer

app = typer.Typer(help="Pack and inspect training datasets.", no_args_is_help=True)
