"""`crowdtrain chain ...` and `crowdtrain demo` (local chain, deploy)."""
import typer

app = typer.Typer(help="Local chain and contract deployment.", no_args_is_help=True)


def demo() -> None:
    raise typer.Exit(1)
