"""The version filter language: a small, MongoDB-like query over versions, parsed and checked
here (no SQL), compiled to SQL by `cairn.service.sql.search` with every value a bound parameter.

    {"metadata.acc": {"$gt": 0.9}, "tags": {"$in": ["eval"]}, "type": "model"}

- A filter is a dict; its entries must all hold (and). ``{"$and": [f, ...]}``,
  ``{"$or": [f, ...]}`` and ``{"$not": f}`` combine filters.
- A field is ``metadata.KEY[.KEY...]`` (a value inside the version's metadata), ``tags``,
  ``aliases``, ``type``, ``name`` (the artifact's), ``project``, ``version`` (the N of vN),
  ``created_at``, ``run`` (the id of the run that logged it), ``description``, ``size``,
  ``file_count`` or ``digest``.
- A condition is a value (equality) or a dict of operators: ``$eq``, ``$ne``, ``$gt``, ``$gte``,
  ``$lt``, ``$lte``, ``$in``, ``$nin``, ``$exists`` (metadata only), ``$contains`` (text: a
  substring, case-insensitive). On ``tags`` and ``aliases`` a value means "has it", ``$in`` "has
  any of", ``$all`` "has all of", ``$nin``/``$ne`` "has none of".
- Comparisons of metadata values only match values of the same JSON kind (a number is never
  greater than a string).

Anything else (an unknown operator or field, a key with quotes or control characters, a value
of the wrong kind) is an `InvalidInputError` naming it: a filter never silently matches all.

``order`` is a field, ``-field`` for descending, or a list of them; missing metadata values sort
last either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cairn.errors import InvalidInputError

COLUMNS = (
    "type",
    "name",
    "project",
    "version",
    "created_at",
    "run",
    "description",
    "size",
    "file_count",
    "digest",
)
SETS = ("tags", "aliases")
ORDERABLE = ("type", "name", "project", "version", "created_at", "size", "file_count")
COMPARE = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARE, "$in", "$nin", "$exists", "$contains", "$all")
MAX_DEPTH = 8
MAX_KEYS = 10
MAX_TERMS = 200
_KEY_RE = re.compile(r"[^\x00-\x1f\x7f\"\\.$]{1,128}")
_NUMERIC = ("version", "size", "file_count")
_TEXT = ("type", "name", "project", "run", "description", "digest")


@dataclass(frozen=True)
class Cond:
    """``field op value``; ``keys`` is the metadata path (empty for other fields)."""

    field: str
    keys: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Cond | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    field: str
    keys: tuple[str, ...]
    descending: bool


def parse_filters(filters: object) -> Node | None:
    """The checked tree of ``filters`` (None or {} for no filter)."""
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise InvalidInputError(
            f"filters is a dict such as {{'metadata.acc': {{'$gt': 0.9}}}}, not {filters!r}"
        )
    counter = [0]
    node = _parse(filters, 0, counter)
    return node if node.parts else None


def _parse(filters: dict[Any, Any], depth: int, counter: list[int]) -> And:
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"filters nest deeper than {MAX_DEPTH} levels")
    parts: list[Node] = []
    for key, value in filters.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"filter keys are field names or operators, not {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidInputError(f"{key} takes a non-empty list of filters, not {value!r}")
            subs: list[Node] = []
            for sub in value:
                if not isinstance(sub, dict):
                    raise InvalidInputError(f"{key} takes a list of filters (dicts), not {sub!r}")
                subs.append(_parse(sub, depth + 1, counter))
            parts.append(And(tuple(subs)) if key == "$and" else Or(tuple(subs)))
        elif key == "$not":
            if not isinstance(value, dict):
                raise InvalidInputError(f"$not takes a filter (a dict), not {value!r}")
            parts.append(Not(_parse(value, depth + 1, counter)))
        elif key.startswith("$"):
            raise InvalidInputError(
                f"unknown filter operator {key!r}: combine filters with $and, $or or $not"
            )
        else:
            field, keys = parse_field(key)
            parts.extend(_conditions(field, keys, key, value, counter))
    return And(tuple(parts))


def parse_field(name: str) -> tuple[str, tuple[str, ...]]:
    if name.startswith("metadata."):
        keys = tuple(name[len("metadata.") :].split("."))
        if len(keys) > MAX_KEYS:
            raise InvalidInputError(f"metadata path {name!r} is deeper than {MAX_KEYS} keys")
        for k in keys:
            if not _KEY_RE.fullmatch(k):
                raise InvalidInputError(
                    f"invalid metadata key {k!r} in {name!r}: keys are 1-128 characters "
                    "without '.', '$', quotes, backslashes or control characters"
                )
        return "metadata", keys
    if name in COLUMNS or name in SETS:
        return name, ()
    raise InvalidInputError(
        f"unknown filter field {name!r}: use metadata.KEY, {', '.join(SETS)}, or "
        f"{', '.join(COLUMNS)}"
    )


def _conditions(
    field: str, keys: tuple[str, ...], name: str, value: Any, counter: list[int]
) -> list[Node]:
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
        ops = value
    else:
        ops = {"$eq": value}
    out: list[Node] = []
    for op, operand in ops.items():
        if op not in OPERATORS:
            raise InvalidInputError(
                f"unknown operator {op!r} on {name!r}: use one of {', '.join(OPERATORS)}"
            )
        counter[0] += 1
        if counter[0] > MAX_TERMS:
            raise InvalidInputError(f"a filter has at most {MAX_TERMS} conditions")
        out.append(Cond(field, keys, op, _check_operand(field, name, op, operand)))
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _check_operand(field: str, name: str, op: str, value: Any) -> Any:
    if op == "$all" and field not in SETS:
        raise InvalidInputError(f"$all applies to tags and aliases, not {name!r}")
    if op in ("$in", "$nin", "$all"):
        if not isinstance(value, list | tuple) or not value:
            raise InvalidInputError(f"{op} on {name!r} takes a non-empty list, not {value!r}")
        return tuple(_check_operand(field, name, "$eq", v) for v in value)
    if op == "$exists":
        if field != "metadata" or not isinstance(value, bool):
            raise InvalidInputError(
                f"$exists applies to metadata keys and takes true or false, not {name!r}: {value!r}"
            )
        return value
    if op == "$contains":
        if (field not in _TEXT and field != "metadata") or not isinstance(value, str):
            raise InvalidInputError(f"$contains takes a string on a text field, not {name!r}")
        return value
    if field in SETS:
        if op not in ("$eq", "$ne") or not isinstance(value, str):
            raise InvalidInputError(
                f"{name} takes a name, or $in/$all/$nin with a list of names, not {op} {value!r}"
            )
        return value
    if field == "created_at":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidInputError(
                    f"created_at compares with a date and time such as '2026-11-30T12:00Z', "
                    f"not {value!r}"
                ) from None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidInputError(
                f"created_at compares with a timezone-aware date and time, not {value!r}"
            )
        return value
    if field in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"{name} compares with a number, not {value!r}")
        return value
    if field in _TEXT:
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} compares with a string, not {value!r}")
        return value
    if not _scalar(value) or (isinstance(value, float) and value != value):
        raise InvalidInputError(
            f"{name} compares with a number, string, true/false or null, not {value!r}"
        )
    if (value is None or isinstance(value, bool)) and op not in ("$eq", "$ne"):
        raise InvalidInputError(f"{op} on {name!r} cannot compare with {value!r}")
    return value


def parse_order(order: object) -> list[OrderKey]:
    if order is None or order == "" or order == []:
        return []
    items = [order] if isinstance(order, str) else order
    if not isinstance(items, list | tuple):
        raise InvalidInputError(f"order is a field name or a list of them, not {order!r}")
    keys: list[OrderKey] = []
    for item in items:
        if not isinstance(item, str) or not item.lstrip("+-"):
            raise InvalidInputError(f"order names a field such as '-metadata.acc', not {item!r}")
        descending = item.startswith("-")
        name = item.lstrip("+-")
        field, path = parse_field(name)
        if field != "metadata" and field not in ORDERABLE:
            raise InvalidInputError(
                f"cannot order by {name!r}: use metadata.KEY or one of {', '.join(ORDERABLE)}"
            )
        keys.append(OrderKey(field, path, descending))
    return keys


_WHERE_RE = re.compile(
    r"\s*(?P<field>[^\s<>=!~]+)\s*(?P<op>==|=|!=|>=|<=|>|<|~| in | not in )\s*(?P<value>.+?)\s*$"
)
_WHERE_OPS = {
    "=": "$eq",
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "~": "$contains",
    " in ": "$in",
    " not in ": "$nin",
}


def parse_where(clauses: list[str]) -> dict[str, Any]:
    """The CLI's ``--where 'metadata.acc > 0.9'`` clauses (all must hold) as a filter dict.
    Values are JSON when they parse as JSON (numbers, true/false/null, "quoted strings",
    lists for in/not in), else plain strings."""
    import json

    parts: list[dict[str, Any]] = []
    for clause in clauses:
        m = _WHERE_RE.match(clause)
        if m is None:
            raise InvalidInputError(
                f"cannot read --where {clause!r}: write FIELD OP VALUE, e.g. 'metadata.acc > 0.9' "
                "(OP is =, !=, >, >=, <, <=, ~ (contains), in, not in)"
            )
        raw = m.group("value")
        try:
            value = json.loads(raw)
        except ValueError:
            if raw[:1] in "<>=!~[{":
                raise InvalidInputError(
                    f"cannot read the value in --where {clause!r}: quote a string value "
                    "('name = \"a b\"'), or write a number, true/false/null or a [list]"
                ) from None
            value = raw
        op = _WHERE_OPS[m.group("op")]
        if m.group("field") in SETS and op == "$in" and isinstance(value, str):
            value = [value]
        parts.append({m.group("field"): {op: value}})
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


__all__ = [
    "And",
    "Cond",
    "Node",
    "Not",
    "Or",
    "OrderKey",
    "parse_field",
    "parse_filters",
    "parse_order",
    "parse_where",
]
