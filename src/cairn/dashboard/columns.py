"""The artifact page's versions table: the metadata columns a user chose (``?col=acc&col=loss``,
kept in the URL so a view can be shared) and the sort a click on a column header asks for, in
the filter box's sort language (``-metadata.acc``). Pure functions: no database, no request.

A metadata column is a dotted path into the version's metadata (``source.year`` is
``metadata["source"]["year"]``), as in the filter and sort language."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cairn.errors import InvalidInputError
from cairn.service.search import parse_order

MAX_COLUMNS = 12  # metadata columns shown at once
MAX_KEYS = 80  # metadata keys offered by the picker
MAX_DEPTH = 4  # nested dictionaries are offered down to this depth

_MISSING = object()


def metadata_keys(metadatas: Iterable[Mapping[str, Any]], limit: int = MAX_KEYS) -> list[str]:
    """The dotted keys of the values in ``metadatas`` (nested dictionaries flattened down to
    `MAX_DEPTH` keys; a deeper or empty dictionary is one value), sorted; the first ``limit``."""
    found: set[str] = set()

    def walk(value: Mapping[str, Any], prefix: str, depth: int) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            if isinstance(item, Mapping) and item and depth < MAX_DEPTH:
                walk(item, path + ".", depth + 1)
            else:
                found.add(path)

    for metadata in metadatas:
        walk(metadata, "", 1)
    return sorted(found, key=lambda k: (k.lower(), k))[:limit]


def chosen(cols: Iterable[str] | None) -> list[str]:
    """The columns of the URL: stripped, without blanks and repeats, at most `MAX_COLUMNS`."""
    out: list[str] = []
    for col in cols or []:
        col = col.strip()
        if col and col not in out:
            out.append(col)
    return out[:MAX_COLUMNS]


def value_at(metadata: Mapping[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` (the key itself first, when it holds a dot), or
    `MISSING`."""
    if key in metadata:
        return metadata[key]
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


def sort_field(key: str) -> str | None:
    """The sort field of metadata column ``key`` (``metadata.KEY``), None when the sort
    language cannot name it (a key with spaces, commas, '$' or quotes)."""
    field = f"metadata.{key}"
    if re.search(r"[\s,]", key):
        return None
    try:
        parse_order([field])
    except InvalidInputError:
        return None
    return field


def sort_state(sort: str, field: str) -> str:
    """'ascending' or 'descending' when ``sort`` orders by ``field`` first, else ''."""
    first = next((f for f in re.split(r"[,\s]+", sort) if f.strip()), "")
    if first.lstrip("+") == field:
        return "ascending"
    if first == "-" + field:
        return "descending"
    return ""


def next_sort(sort: str, field: str, descending_first: bool = False) -> str:
    """The sort a click on ``field``'s header asks for: the other direction when the table is
    sorted by it, else ascending (descending for ``descending_first``: newest, largest)."""
    state = sort_state(sort, field)
    if state == "ascending":
        return "-" + field
    if state == "descending":
        return field
    return "-" + field if descending_first else field
