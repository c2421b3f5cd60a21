"""Entry point of the `cairn` command."""

from __future__ import annotations

import typer

import cairn

app = typer.Typer(no_args_is_help=True, help="Cairn: version ML data and models, with lineage.")


@app.command()
def version() -> None:
    """Print Cairn's version."""
    typer.echo(cairn.__version__)


def main() -> None:
    app()
