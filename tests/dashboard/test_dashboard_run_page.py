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
