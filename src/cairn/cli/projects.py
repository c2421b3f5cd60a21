"""`cairn projects`: the projects in the store."""

from __future__ import annotations

from cairn.cli import output
from cairn.cli.output import JsonOpt


def projects(json_out: JsonOpt = False) -> None:
    """List the projects with their numbers of artifacts and runs."""
    from cairn.cli.common import backend

    infos = backend().registry.list_projects()
    if json_out:
        output.print_json([p.to_dict() for p in infos])
        return
    if not infos:
        output.echo("No projects yet: log something with `cairn push PATH`.")
        return
    t = output.table("PROJECT", "ARTIFACTS", "RUNS", "CREATED")
    for p in infos:
        output.add_row(
            t, p.name, str(p.artifact_count), str(p.run_count), output.when(p.created_at)
        )
    t.print()
