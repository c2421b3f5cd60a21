"""Comparing two versions: files added, removed and changed (a page at a time, from the trees,
skipping every shared subtree), and the difference of their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cairn.objects import tree
from cairn.objects.store import ObjectStore

COUNT_LIMIT = 100_000  # changes counted for the summary at most


@dataclass
class FileChange:
    path: str
    kind: str  # added | removed | modified
    old_size: int | None
    new_size: int | None

    @property
    def delta(self) -> int:
        return (self.new_size or 0) - (self.old_size or 0)


@dataclass
class FileDiff:
    changes: list[FileChange]
    offset: int
    has_more: bool
    counts: dict[str, int]  # per kind, over the whole diff (up to COUNT_LIMIT changes)
    counted_all: bool
    bytes_added: int
    bytes_removed: int


def _change(c: tree.Change) -> FileChange:
    return FileChange(
        c.path,
        c.kind,
        c.old.size if c.old else None,
        c.new.size if c.new else None,
    )


def file_diff(object_store: ObjectStore, old: str, new: str, offset: int, limit: int) -> FileDiff:
    """Changes ``offset .. offset+limit`` from ``old`` to ``new``, and the totals (one walk of
    the diff, stopped after COUNT_LIMIT changes or the page, whichever comes later)."""
    page: list[FileChange] = []
    counts = {"added": 0, "removed": 0, "modified": 0}
    added = removed = 0
    n = 0
    stop = max(COUNT_LIMIT, offset + limit + 1)
    for c in tree.diff(old, new, object_store.get):
        if offset <= n <= offset + limit:
            page.append(_change(c))
        n += 1
        if n > stop:
            break
        counts[c.kind] += 1
        if c.old:
            removed += c.old.size
        if c.new:
            added += c.new.size
    return FileDiff(
        changes=page[:limit],
        offset=offset,
        has_more=len(page) > limit,
        counts=counts,
        counted_all=n <= stop,
        bytes_added=added,
        bytes_removed=removed,
    )


@dataclass
class MetaChange:
    key: str  # a dotted path into the metadata
    kind: str  # added | removed | changed
    old: Any
    new: Any


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def metadata_diff(old: dict[str, Any], new: dict[str, Any]) -> list[MetaChange]:
    a = _flatten(old) if old else {}
    b = _flatten(new) if new else {}
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            out.append(MetaChange(key, "added", None, b[key]))
        elif key not in b:
            out.append(MetaChange(key, "removed", a[key], None))
        elif a[key] != b[key]:
            out.append(MetaChange(key, "changed", a[key], b[key]))
    return out


__all__ = ["FileChange", "FileDiff", "MetaChange", "file_diff", "metadata_diff"]
