"""`cairn runs ...`: the runs of a project, and one run's details."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, ProjectOpt
from cairn.core.records import RunState


class RunStateChoice(StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"
    crashed = "crashed"


app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="List runs and show what a run used and logged.",
)


@app.command("ls")
def ls(
    project_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="[PROJECT]",
            help="Project (default: --project, $CAIRN_PROJECT, 'default').",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    job_type: Annotated[
        str | None,
        typer.Option("--job-type", "-j", help="Only runs of this job type.", show_default=False),
    ] = None,
    state: Annotated[
        RunStateChoice | None,
        typer.Option(
            "--state",
            "-s",
            help="Only runs in this state (crashed: killed, or silent for too long).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List the runs of a project, newest first."""
    from cairn.cli.common import api

    proj = output.resolve_project(project_arg or project)
    wanted: RunState | None = state.value if state is not None else None
    found = api(proj).runs(proj, job_type=job_type, state=wanted, limit=limit)
    runs = [r.info for r in found]
    if json_out:
        output.print_json([r.to_dict() for r in runs])
        return
    if not runs:
        what = f" of job type {job_type!r}" if job_type else ""
        what += f" in state {wanted}" if wanted else ""
        output.echo(f"No runs{what} in project {proj!r}.")
        return
    t = output.table("ID", "NAME", "JOB TYPE", "STATE", "STARTED", "DURATION")
    for r in runs:
        output.add_row(
            t,
            r.id,
            r.name,
            r.job_type or "-",
            r.state,
            output.when(r.started_at),
            output.duration(r.started_at, r.finished_at),
        )
    t.print()


@app.command("show")
def show(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID", help="The run's id (see `cairn runs ls`).", show_default=False
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Show a run: state, times, host, git commit, config, summary, inputs and outputs."""
    from cairn.cli.common import api, backend, version_json

    info = api(None).run(run_id).info
    registry = backend().registry
    inputs = registry.run_inputs(info.id)
    outputs = registry.run_outputs(info.id)
    if json_out:
        data: dict[str, Any] = info.to_dict()
        data["inputs"] = [version_json(v) for v in inputs]
        data["outputs"] = [version_json(v) for v in outputs]
        output.print_json(data)
        return
    output.heading(f"run {info.name} ({info.id})  project {info.project}")
    git = "-"
    if info.git_commit:
        git = info.git_commit + (" (uncommitted changes)" if info.git_dirty else "")
    rows = [
        ("job type", info.job_type or "-"),
        ("state", info.state + (f" ({output.one_line(info.failure)})" if info.failure else "")),
        ("started", output.when(info.started_at)),
        ("finished", output.when(info.finished_at)),
        ("duration", output.duration(info.started_at, info.finished_at)),
        ("host", info.host or "-"),
        ("python", info.python_version or "-"),
        ("git commit", git),
        ("user", info.user or "-"),
        ("tags", output.comma(info.tags)),
    ]
    if info.notes:
        rows.append(("notes", output.one_line(info.notes)))
    output.print_key_values(rows)
    for title, values in (("config", info.config), ("summary", info.summary)):
        output.heading(title)
        if not values:
            output.echo("  -")
        else:
            output.print_key_values(
                [(k, output.json_value(v)) for k, v in values.items()], indent="  "
            )
    for title, versions in (("inputs", inputs), ("outputs", outputs)):
        output.heading(f"{title} ({len(versions)})")
        for v in versions:
            output.echo(
                f"  {v.qualified_name}  {v.type}  {output.human_size(v.size)}  "
                f"{v.file_count} files"
                + ("  (deleted)" if v.state == "deleted" else "")
                + ("  (re-logged)" if title == "outputs" and v.run_id != info.id else "")
            )
