"""Line charts of a run's logged metrics, drawn on the server as inline SVG (no script, no
library: the dashboard's Content-Security-Policy allows scripts from /static only, and a chart
needs none).

`metric_series(rows)` turns `run.log` rows into one series per numeric key (booleans, strings,
nested values, NaN and infinities are left out); `line_chart(series)` draws one. A series longer
than `MAX_POINTS` is reduced to the first and last point of each of `MAX_POINTS // 2` step
buckets plus their minimum and maximum, so a spike is never smoothed away and the page stays
small for a run of a million steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from cairn.core.records import MetricRow

MAX_POINTS = 600  # drawn per chart
MAX_CHARTS = 60  # metric keys charted per run (the rest are listed by name)
MARKERS = 40  # a series this short also gets a marker (with its value as a tooltip) per point

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 26


@dataclass
class Series:
    key: str
    points: list[tuple[int, float]]  # (step, value) in step order, possibly reduced
    count: int  # points logged
    first: float
    last: float
    low: float
    high: float
    first_step: int
    last_step: int


@dataclass
class Charts:
    series: list[Series]
    skipped: list[str]  # numeric keys beyond MAX_CHARTS
    rows: int


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_series(rows: Iterable[MetricRow]) -> Charts:
    """One series per key whose logged values include a finite number, in key order."""
    found: dict[str, list[tuple[int, float]]] = {}
    count = 0
    for row in rows:
        count += 1
        for key, value in row.data.items():
            number = _number(value)
            if number is not None:
                found.setdefault(key, []).append((row.step, number))
    keys = sorted(found)
    series = []
    for key in keys[:MAX_CHARTS]:
        points = found[key]
        values = [v for _, v in points]
        series.append(
            Series(
                key=key,
                points=reduce(points, MAX_POINTS),
                count=len(points),
                first=values[0],
                last=values[-1],
                low=min(values),
                high=max(values),
                first_step=points[0][0],
                last_step=points[-1][0],
            )
        )
    return Charts(series=series, skipped=keys[MAX_CHARTS:], rows=count)


def reduce(points: Sequence[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most ``limit`` points that keep the shape: per bucket of consecutive points, its
    first, lowest, highest and last, in step order."""
    if len(points) <= limit:
        return list(points)
    buckets = max(limit // 4, 1)
    size = math.ceil(len(points) / buckets)
    out: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        picks = {0, len(bucket) - 1}
        picks.add(min(range(len(bucket)), key=lambda i: bucket[i][1]))
        picks.add(max(range(len(bucket)), key=lambda i: bucket[i][1]))
        out.extend(bucket[i] for i in sorted(picks))
    return out


def fmt(value: float) -> str:
    """A value as an axis or tooltip shows it: short, but exact enough to tell steps apart."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def line_chart(series: Series) -> Markup:
    """The series as an SVG line chart: the line, the lowest and highest value on the y axis,
    the first and last step on the x axis, and (for short series) a marker per point."""
    x0, x1 = series.first_step, series.last_step
    y0, y1 = series.low, series.high
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(step: int) -> float:
        return LEFT + (step - x0) / (x1 - x0) * plot_w

    def y(value: float) -> float:
        return TOP + (1 - (value - y0) / (y1 - y0)) * plot_h

    coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in series.points)
    key = escape(series.key)
    label = escape(
        f"{series.key}: {series.count} point{'s' if series.count != 1 else ''}, steps "
        f"{series.first_step} to {series.last_step}, from {fmt(series.first)} to "
        f"{fmt(series.last)} (lowest {fmt(series.low)}, highest {fmt(series.high)})"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'data-key="{key}" data-points="{series.count}">',
        f"<title>{label}</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for value in (series.high, series.low):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="axis y" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    bottom = HEIGHT - BOTTOM + 16
    parts.append(
        f'<text class="axis x" x="{LEFT}" y="{bottom}" text-anchor="start">'
        f"{series.first_step}</text>"
    )
    if series.last_step != series.first_step:
        parts.append(
            f'<text class="axis x" x="{WIDTH - RIGHT}" y="{bottom}" text-anchor="end">'
            f"{series.last_step}</text>"
        )
    parts.append(
        f'<text class="axis x" x="{LEFT + plot_w / 2:.0f}" y="{bottom}" '
        'text-anchor="middle">step</text>'
    )
    parts.append(f'<polyline class="line" points="{coords}"/>')
    if len(series.points) <= MARKERS:
        for s, v in series.points:
            parts.append(
                f'<circle class="point" cx="{x(s):.1f}" cy="{y(v):.1f}" r="2.5">'
                f"<title>step {s}: {escape(fmt(v))}</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["Charts", "Series", "fmt", "line_chart", "metric_series", "reduce"]
