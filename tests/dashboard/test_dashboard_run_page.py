"""The run page without a browser (FastAPI's TestClient): charts of the metrics a run logged
with `run.log` (inline SVG drawn by the server), and its notes edited in place."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import TestClient, open_backend

import cairn
from cairn.core.records import MetricRow
from cairn.dashboard import charts, create_dashboard_app
from cairn.sdk.backend import reset_backends

ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def fresh(cairn_env: Path) -> Iterator[Any]:
    backend = open_backend(cairn_env)
    yield backend
    backend.close()
    reset_backends()


def chart_of(html: str, key: str) -> str:
    found = re.search(r'<svg class="chart"[^>]*data-key="' + re.escape(key) + r'".*?</svg>', html)
    assert found, f"no chart of {key!r}"
    return found.group(0)


def polyline(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'<polyline class="line" points="([^"]*)"', svg)
    assert found
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_run_page_charts_every_numeric_metric_over_its_steps(fresh: Any) -> None:
    with cairn.init(project="p", job_type="train") as run:
        for step in range(10):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 10, "phase": "warmup", "ok": True})
        run.log({"loss": float("nan"), "lr": 0.5, "nested": {"a": 1}})
        run_id = run.id
    client = TestClient(create_dashboard_app(fresh))
    r = client.get(f"/p/p/r/{run_id}")
    assert r.status_code == 200
    html = r.text
    # one chart per key with a finite number: strings, booleans, nested values and NaN are out
    keys = re.findall(r'<svg class="chart"[^>]*data-key="([^"]+)"', html)
    assert keys == ["acc", "loss", "lr"]
    loss = chart_of(html, "loss")
    assert 'data-points="10"' in loss  # the NaN at step 10 is not drawn
    points = polyline(loss)
    assert len(points) == 10
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assert xs == sorted(xs) and len(set(xs)) == 10  # one point per step, left to right
    assert ys == sorted(ys)  # the loss falls: SVG's y grows downwards
    assert "steps 0 to 9, from 1 to 0.1 (lowest 0.1, highest 1)" in loss
    assert "<title>step 3: 0.25</title>" in loss  # a short series: a tooltip per point
    # axes: the first and last step, the lowest and highest value
    for axis, label in (("x", "0"), ("x", "9"), ("y", "0.1"), ("y", "1")):
        assert re.search(f'class="axis {axis}"[^>]*>{re.escape(label)}<', loss), (axis, label)
    # the card names the key and its last value; summary and config are still there
    card = re.search(r'<figure class="chart-card" data-metric="acc">.*?</figure>', html, re.S)
    assert card and 'class="metric-last">0.9<' in card.group(0)
    assert 'id="summary"' in html and 'id="config"' in html
    # a single-point series still draws (a flat line, no division by zero)
    lr = chart_of(html, "lr")
    assert len(polyline(lr)) == 1 and "step 10: 0.5" in lr
    # the chart is markup, not script: the page stays within the CSP
    assert "<script" not in re.sub(r'<script src="/static/[^"]+"[^>]*></script>', "", html)


def test_a_run_without_metrics_has_no_charts_section(fresh: Any) -> None:
    with cairn.init(project="p") as run:
        run_id = run.id
    html = TestClient(create_dashboard_app(fresh)).get(f"/p/p/r/{run_id}").text
    assert 'id="charts"' not in html


def test_long_series_are_reduced_but_keep_their_extremes() -> None:
    at = datetime.now(UTC)
    rows = [MetricRow(step=i, data={"loss": math.sin(i / 500)}, at=at) for i in range(100_000)]
    rows[54_321] = MetricRow(step=54_321, data={"loss": 42.0}, at=at)  # one spike
    found = charts.metric_series(rows)
    (series,) = found.series
    assert series.count == 100_000 and found.rows == 100_000
    assert len(series.points) <= charts.MAX_POINTS
    assert (54_321, 42.0) in series.points  # the spike survives the reduction
    assert series.points[0][0] == 0 and series.points[-1][0] == 99_999
    steps = [s for s, _ in series.points]
    assert steps == sorted(steps)
    svg = charts.line_chart(series)
    assert "<circle" not in svg  # no per-point markers on a long series
    assert len(svg) < 40_000


def test_more_keys_than_charts_are_listed_by_name() -> None:
    at = datetime.now(UTC)
    data = {f"m{i:03d}": float(i) for i in range(charts.MAX_CHARTS + 5)}
    found = charts.metric_series([MetricRow(step=0, data=data, at=at)])
    assert len(found.series) == charts.MAX_CHARTS
    assert found.skipped == [f"m{i:03d}" for i in range(charts.MAX_CHARTS, charts.MAX_CHARTS + 5)]


def test_a_series_of_exactly_max_points_is_drawn_exactly() -> None:
    at = datetime.now(UTC)
    rows = [MetricRow(step=i, data={"x": float(i % 7)}, at=at) for i in range(charts.MAX_POINTS)]
    (series,) = charts.metric_series(rows).series
    assert series.points == [(i, float(i % 7)) for i in range(charts.MAX_POINTS)]


def test_rows_are_read_once_and_not_kept() -> None:
    """The rows come from a generator (a page at a time from the registry): the summary kept
    per key stays bounded however long the run, and the generator is read once."""
    at = datetime.now(UTC)
    read = 0

    def rows() -> Iterator[MetricRow]:
        nonlocal read
        for i in range(300_000):
            read += 1
            value = -5.0 if i == 123_457 else math.cos(i / 1000)
            yield MetricRow(step=2 * i, data={"a": value, "b": i}, at=at)

    found = charts.metric_series(rows())
    assert read == 300_000 and found.rows == 300_000
    a, b = found.series
    assert a.count == b.count == 300_000
    assert len(a.points) <= charts.MAX_POINTS and len(b.points) <= charts.MAX_POINTS
    assert (2 * 123_457, -5.0) in a.points and a.low == -5.0
    assert b.points[0] == (0, 0.0) and b.points[-1] == (599_998, 299_999.0)
    assert [s for s, _ in a.points] == sorted(s for s, _ in a.points)


class CountingRegistry:
    """A registry that counts the metric reads made through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.metric_reads = 0

    def run_metrics(self, run_id: str, **kw: Any) -> Any:
        self.metric_reads += 1
        return self.inner.run_metrics(run_id, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_finished_runs_charts_are_kept_a_running_runs_are_not(fresh: Any) -> None:
    from types import SimpleNamespace

    registry = CountingRegistry(fresh.registry)
    client = TestClient(
        create_dashboard_app(SimpleNamespace(registry=registry, object_store=fresh.object_store))
    )
    run = cairn.init(project="p")
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    run.metrics()  # flushes what was logged
    page = client.get(f"/p/p/r/{run.id}").text
    assert 'data-points="2"' in page
    run.log({"loss": 0.25})
    run.metrics()  # flushes what was logged
    assert 'data-points="3"' in client.get(f"/p/p/r/{run.id}").text  # running: read again
    run.finish()
    assert registry.metric_reads == 2
    client.get(f"/p/p/r/{run.id}")
    reads = registry.metric_reads
    assert reads == 3
    again = client.get(f"/p/p/r/{run.id}").text
    assert registry.metric_reads == reads and 'data-points="3"' in again  # kept
