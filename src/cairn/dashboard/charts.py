"""Line charts of a run's logged metrics, drawn on the server as inline SVG (no script, no
library: the dashboard's Content-Security-Policy allows scripts from /static only, and a chart
needs none).

`metric_series(rows)` turns `run.log` rows into one series per numeric key (booleans, strings,
nested values, NaN and infinities are left out); `line_chart(series)` draws one. A series of
more than `MAX_POINTS` points is kept as at most `MAX_POINTS // 4` buckets of consecutive
points, each drawn as its first, lowest, highest and last point, so a spike is never smoothed
away, and the page (and the memory it takes to draw it) stays small for a run of a million
steps.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from markupsafe import Markup, escape

from cairn.core.records import MetricRow, RunInfo

MAX_POINTS = 600  # drawn per chart
MAX_CHARTS = 60  # metric keys charted per run (the rest are listed by name)
KEEP_RUNS = 32  # finished runs whose charts are kept
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


class _Track:
    """One key's series as it is read: its extremes, and its points exactly while they are at
    most `MAX_POINTS`, then as buckets of consecutive points (each kept as its first, lowest,
    highest and last point) of a size that doubles as the series grows, so memory stays
    bounded however many steps a run logged."""

    __slots__ = ("buckets", "count", "first", "high", "last", "low", "raw", "size")

    def __init__(self, step: int, value: float) -> None:
        point = (step, value)
        self.raw: list[tuple[int, float]] | None = [point]
        self.buckets: list[list[Any]] = []  # [first, low, high, last, count] (points)
        self.size = 1
        self.count = 1
        self.first = self.last = self.low = self.high = point

    def add(self, step: int, value: float) -> None:
        point = (step, value)
        self.count += 1
        self.last = point
        if value < self.low[1]:
            self.low = point
        if value > self.high[1]:
            self.high = point
        if self.raw is not None:
            self.raw.append(point)
            if len(self.raw) > MAX_POINTS:
                self._to_buckets()
            return
        bucket = self.buckets[-1]
        if bucket[4] < self.size:
            if value < bucket[1][1]:
                bucket[1] = point
            if value > bucket[2][1]:
                bucket[2] = point
            bucket[3] = point
            bucket[4] += 1
            return
        self.buckets.append([point, point, point, point, 1])
        if len(self.buckets) > _BUCKETS:
            self._merge()

    def _to_buckets(self) -> None:
        raw = self.raw or []
        while math.ceil(len(raw) / self.size) > _BUCKETS // 2:
            self.size *= 2
        for start in range(0, len(raw), self.size):
            part = raw[start : start + self.size]
            low = min(part, key=lambda p: p[1])
            high = max(part, key=lambda p: p[1])
            self.buckets.append([part[0], low, high, part[-1], len(part)])
        self.raw = None

    def _merge(self) -> None:
        old = self.buckets
        merged = []
        for i in range(0, len(old) - 1, 2):
            a, b = old[i], old[i + 1]
            low = a[1] if a[1][1] <= b[1][1] else b[1]
            high = a[2] if a[2][1] >= b[2][1] else b[2]
            merged.append([a[0], low, high, b[3], a[4] + b[4]])
        if len(old) % 2:
            merged.append(old[-1])
        self.buckets = merged
        self.size *= 2

    def points(self) -> list[tuple[int, float]]:
        if self.raw is not None:
            return list(self.raw)
        out: list[tuple[int, float]] = []
        for first, low, high, last, _ in self.buckets:
            out.extend(sorted({first, low, high, last}))
        return out


_BUCKETS = MAX_POINTS // 4


def _number(value: object) -> float | None:
    kind = type(value)  # exactly float or int: not bool (a subclass of int)
    if kind is float:
        number = cast(float, value)
    elif kind is int:
        try:
            number = float(cast(int, value))
        except OverflowError:  # an int beyond a float's range
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def metric_series(rows: Iterable[MetricRow]) -> Charts:
    """One series per key whose logged values include a finite number, in key order. The
    rows are read once, in step order, and not kept."""
    found: dict[str, _Track] = {}
    count = 0
    for row in rows:
        count += 1
        step = row.step
        for key, value in row.data.items():
            number = _number(value)
            if number is None:
                continue
            track = found.get(key)
            if track is None:
                found[key] = _Track(step, number)
            else:
                track.add(step, number)
    keys = sorted(found)
    series = []
    for key in keys[:MAX_CHARTS]:
        t = found[key]
        series.append(
            Series(
                key=key,
                points=t.points(),
                count=t.count,
                first=t.first[1],
                last=t.last[1],
                low=t.low[1],
                high=t.high[1],
                first_step=t.first[0],
                last_step=t.last[0],
            )
        )
    return Charts(series=series, skipped=keys[MAX_CHARTS:], rows=count)


class ChartCache:
    """The charts of finished runs (a finished run logs no more metrics), the most recently
    shown `KEEP_RUNS` of them, per process."""

    def __init__(self, keep: int = KEEP_RUNS) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._charts: OrderedDict[tuple[str, datetime], Charts] = OrderedDict()

    def get(self, run: RunInfo, compute: Callable[[], Charts]) -> Charts:
        if run.finished_at is None:
            return compute()  # still running: it may log more at any moment
        key = (run.id, run.finished_at)
        with self._lock:
            found = self._charts.get(key)
            if found is not None:
                self._charts.move_to_end(key)
                return found
        charts = compute()
        with self._lock:
            self._charts[key] = charts
            while len(self._charts) > self.keep:
                self._charts.popitem(last=False)
        return charts


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


__all__ = ["ChartCache", "Charts", "Series", "fmt", "line_chart", "metric_series"]
