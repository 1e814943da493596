"""`crowdtrain dataset ...`: pack files into hashed byte-token shards, verify a packed dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Pack and inspect training datasets.", no_args_is_help=True)
console = Console()


@app.command()
def pack(
    paths: list[Path] = typer.Argument(None, help="Files or directories to pack (directories recursively)."),
    out: Path = typer.Option(..., "--out", help="Directory to write manifest.json and the shards to."),
    stdlib: bool = typer.Option(False, "--stdlib", help="Pack this Python's standard library sources "
                                "(the default dataset) instead of PATHS."),
    shard_mb: float = typer.Option(4.0, help="Shard size in MiB."),
) -> None:
    """Pack files into uint8 token shards (bytes = tokens, vocab 256) and print the dataset hash."""
    from training import DatasetError
    from training.data import pack_paths, pack_stdlib
    from protocol.hashing import to_hex

    if stdlib == bool(paths):
        console.print("[red]error:[/] give either PATHS or --stdlib (not both, not neither)")
        raise typer.Exit(2)
    with Progress(TextColumn("[bold]packing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("pack", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            kw = {"shard_bytes": max(1, int(shard_mb * (1 << 20))), "progress": progress}
            h = pack_stdlib(out, **kw) if stdlib else pack_paths(paths, out, **kw)
        except DatasetError as e:
            console.print(f"[red]error:[/] {e}")
            raise typer.Exit(1)
    _summary(out)
    console.print(f"dataset hash (put it in the job spec as `dataset`): [bold green]{to_hex(h)}[/]")


@app.command()
def verify(
    path: Path = typer.Argument(..., help="A packed dataset directory."),
    hash: Optional[str] = typer.Option(None, "--hash", help="Expected dataset hash (the spec's `dataset`)."),
) -> None:
    """Check every shard against the manifest (and the manifest against --hash)."""
    from training import DatasetError
    from training.data import load_dataset
    from protocol.hashing import to_hex

    try:
        ds = load_dataset(path, hash)
    except (DatasetError, ValueError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1)
    _summary(path)
    console.print(f"ok: {to_hex(ds.hash)} ({len(ds.train):,} train / {len(ds.val):,} held-out tokens)")


def _summary(path: Path) -> None:
    import json

    m = json.loads((path / "manifest.json").read_text())
    for split in ("train", "val"):
        n = sum(s["tokens"] for s in m.get(split, []))
        console.print(f"  {split:5s} {len(m.get(split, [])):3d} shard(s) {n:>12,} tokens  "
                      f"{m['documents'][split]:,} documents")
