"""`cairn init-demo`: seed a store with the example pipeline (needs NumPy)."""

from __future__ import annotations

from typing import Annotated

import typer

from cairn.cli import output
from cairn.cli.output import QuietOpt


def init_demo(
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project to put the demo in.")
    ] = "demo",
    rows: Annotated[
        int, typer.Option("--rows", min=10, help="Rows of the synthetic dataset.")
    ] = 2000,
    quiet: QuietOpt = False,
) -> None:
    """Run a small ML pipeline (dataset -> training -> evaluation -> new dataset ->
    fine-tuning) that versions its data and models, to have something to explore.

    Needs NumPy (pip install numpy).
    """
    from cairn.core import names
    from cairn.demo import require_numpy, run_demo, summary

    output.silence(quiet)
    names.check_project(project)
    require_numpy()
    run_demo(project, rows)
    if output.quiet(quiet):
        return
    output.echo(summary(project))
    output.echo("\nExplore it:")
    output.echo(f"  cairn artifact ls {project}")
    output.echo(f"  cairn artifact show {project}/classifier:production")
    output.echo(f"  cairn lineage {project}/classifier:finetuned --up")
    output.echo(f"  cairn runs ls {project}")
