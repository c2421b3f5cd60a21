"""A project's runs, a run's page (charts of its logged metrics, inputs, outputs, code diff,
its notes edited in place) and its raw diff."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from collections.abc import Iterator

from fastapi.responses import PlainTextResponse, Response

from cairn.core.records import MetricRow
from cairn.dashboard import charts
from cairn.dashboard.context import PAGE, C, Offset, Pages, make_pager, project_info, window
from cairn.errors import InvalidInputError, ObjectNotFoundError, RunNotFoundError
from cairn.service.registry import Registry
from cairn.service.sql import SqlRegistry

DIFF_LIMIT = 256 << 10
METRICS_PAGE = 20_000  # metric rows read at a time for the charts

pages = Pages()


@pages.get("/p/{project}/runs")
def runs_page(
    ctx: C,
    project: str,
    job_type: str = "",
    state: str = "",
    offset: Offset = 0,
    limit: int | None = None,
) -> Response:
    ctx.need(project)
    offset, limit = window(offset, limit, PAGE)
    info = project_info(ctx, project)
    if state and state not in ("running", "finished", "failed", "crashed"):
        raise InvalidInputError(f"unknown run state {state!r}")
    found = ctx.registry.list_runs(
        project,
        job_type=job_type or None,
        state=state or None,  # type: ignore[arg-type]  # checked above
        limit=limit + 1,
        offset=offset,
    )
    shown = found[:limit]
    total = info.run_count if not job_type and not state else None
    pager = make_pager(ctx.request, offset, limit, len(shown), len(found) > limit, total)
    return ctx.page(
        "runs.html",
        project=info,
        runs=shown,
        job_type=job_type,
        state=state,
        pager=pager,
        section="runs",
    )


@pages.get("/p/{project}/r/{run_id}")
def run_page(ctx: C, project: str, run_id: str) -> Response:
    ctx.need(project)
    run = ctx.registry.get_run(run_id)
    if run.project != project:
        raise RunNotFoundError(f"project {project!r} has no run {run_id!r}")
    inputs = ctx.registry.run_inputs(run.id)
    outputs = ctx.registry.run_outputs(run.id)
    diff_text, diff_truncated, diff_error = "", False, ""
    if run.git_diff_digest:
        try:
            data = ctx.object_store.get(run.git_diff_digest)
            diff_truncated = len(data) > DIFF_LIMIT
            diff_text = data[:DIFF_LIMIT].decode("utf-8", errors="replace")
        except ObjectNotFoundError:
            diff_error = "the diff is not in the object store"
    return ctx.page(
        "run.html",
        project=project,
        run=run,
        inputs=inputs,
        outputs=outputs,
        diff_text=diff_text,
        diff_truncated=diff_truncated,
        diff_error=diff_error,
        readable=lambda p: ctx.viewer.can(p, "read"),
        charts=ctx.site.charts.get(
            run, lambda: charts.metric_series(_metric_rows(ctx.registry, run.id))
        ),
        line_chart=charts.line_chart,
        fmt=charts.fmt,
        can_write=ctx.can_write(project),
    )


def _metric_rows(registry: Registry, run_id: str) -> Iterator[MetricRow]:
    """The run's logged rows in step order, read a page at a time where the registry can (the
    charts keep only a bounded summary of them)."""
    if not isinstance(registry, SqlRegistry):
        yield from registry.run_metrics(run_id)
        return
    offset = 0
    while True:
        page = registry.run_metrics(run_id, limit=METRICS_PAGE, offset=offset)
        yield from page
        if len(page) < METRICS_PAGE:
            return
        offset += METRICS_PAGE


@pages.get("/p/{project}/r/{run_id}/diff")
def run_diff(ctx: C, project: str, run_id: str) -> Response:
    ctx.need(project)
    run = ctx.registry.get_run(run_id)
    if run.project != project or not run.git_diff_digest:
        raise RunNotFoundError(f"run {run_id!r} of {project!r} has no recorded diff")
    return PlainTextResponse(
        ctx.object_store.get(run.git_diff_digest).decode("utf-8", errors="replace"),
        headers={"X-Content-Type-Options": "nosniff"},
    )
