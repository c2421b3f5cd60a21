"""The dashboard's filter box and alias timelines: pure functions over what the service layer
answers (no database, no request).

The filter box takes the CLI's ``--where`` language (`cairn.service.search.parse_where`): clauses
``FIELD OP VALUE`` joined by ``and`` (or one per line), e.g. ``metadata.acc > 0.9 and tags in
["eval"]``. An ``and`` inside a quoted string or a ``[list]`` is part of the value.

A timeline is built from alias changes oldest first (``alias`` moved to ``version``, None when
removed): for each alias, the spans during which one version held it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cairn.errors import InvalidInputError
from cairn.service.search import parse_where

_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def split_where(text: str) -> list[str]:
    """The clauses of a filter box: split at each top-level ``and`` and at line ends (never
    inside "quotes" or [brackets])."""
    clauses: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            current.append(ch)
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch in "[{":
            depth += 1
            current.append(ch)
        elif ch in "]}":
            depth = max(depth - 1, 0)
            current.append(ch)
        elif depth == 0 and ch in "\r\n":
            clauses.append("".join(current))
            current = []
        elif depth == 0 and ch.isspace() and (found := _AND.match(text, i)) is not None:
            clauses.append("".join(current))
            current = []
            i = found.end()
            continue
        else:
            current.append(ch)
        i += 1
    clauses.append("".join(current))
    return [c.strip() for c in clauses if c.strip()]


def where_filters(text: str) -> dict[str, Any] | None:
    """The filter dict of a filter box's text (None when empty); an `InvalidInputError` naming
    what is wrong otherwise."""
    clauses = split_where(text)
    if not clauses:
        return None
    try:
        return parse_where(clauses)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc).replace("--where ", "")) from None


def sort_order(text: str) -> list[str] | None:
    """``-metadata.acc, created_at`` -> ['-metadata.acc', 'created_at'] (None when empty)."""
    fields = [f.strip() for f in re.split(r"[,\s]+", text) if f.strip()]
    return fields or None


def parse_at(text: str) -> datetime | None:
    """An "as of" time from the form: ``2026-11-30T12:00`` (a datetime-local input, read as
    UTC), or with a zone (``2026-11-30T12:00Z``, ``+01:00``). None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise InvalidInputError(
            f"'as of' is a date and time such as 2026-11-30T12:00 (UTC), not {text[:60]!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def at_value(at: datetime | None) -> str:
    """The value of a datetime-local input showing ``at`` (UTC, to the second)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if at is not None else ""


@dataclass(frozen=True)
class AliasChange:
    """``alias`` moved to ``version`` (None: removed) at ``at``, by ``user`` (or a run)."""

    alias: str
    version: int | None
    at: datetime
    user: str | None = None
    run_id: str | None = None


@dataclass
class Span:
    """``version`` held ``alias`` from ``start`` until ``end`` (None: still holds it)."""

    alias: str
    version: int
    start: datetime
    end: datetime | None
    user: str | None = None
    run_id: str | None = None

    def covers(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


def timeline(changes: Iterable[AliasChange]) -> dict[str, list[Span]]:
    """For each alias (in name order), its spans newest first."""
    spans: dict[str, list[Span]] = {}
    for change in changes:
        held = spans.setdefault(change.alias, [])
        if held and held[-1].end is None:
            if held[-1].version == change.version:
                continue  # set again on the version holding it: no move
            held[-1].end = change.at
        if change.version is not None:
            held.append(
                Span(change.alias, change.version, change.at, None, change.user, change.run_id)
            )
    return {alias: list(reversed(spans[alias])) for alias in sorted(spans) if spans[alias]}


__all__ = [
    "AliasChange",
    "Span",
    "at_value",
    "parse_at",
    "sort_order",
    "split_where",
    "timeline",
    "where_filters",
]
