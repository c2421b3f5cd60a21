"""Checks of the values callers hand the registry, shared by the SQL registry and the HTTP
client (which checks before sending, so a bad value fails the same way in both modes).

Pure Python: importing this must not import SQLAlchemy."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cairn.core.names import check_alias, check_tag, has_control
from cairn.errors import InvalidInputError, InvalidMetadataError, InvalidNameError

_SHOWN = 5  # names listed in a not-found message


def json_problem(value: Any, path: str, parents: frozenset[int]) -> tuple[str, str] | None:
    """(path, what is wrong) for the first part of `value` JSON cannot hold, else None."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return path, f"is {value!r}, which JSON cannot represent: use None or a string instead"
    if isinstance(value, Mapping):
        if id(value) in parents:
            return path, "contains itself"
        inner = parents | {id(value)}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return (
                    f"{path}[{key!r}]",
                    f"has a key of type {type(key).__name__}: JSON keys are strings",
                )
            found = json_problem(item, f"{path}[{key!r}]", inner)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        if id(value) in parents:
            return path, "contains itself"
        inner = parents | {id(value)}
        for index, item in enumerate(value):
            found = json_problem(item, f"{path}[{index}]", inner)
            if found:
                return found
        return None
    return path, (
        f"is a {type(value).__name__}, which is not JSON: convert it to str, int, float, bool, "
        "None, a list or a dict (e.g. float(x), x.tolist(), str(x))"
    )


def to_json(kind: str, value: Any) -> Any:
    """`value` as it will read back from the database, or InvalidMetadataError naming the
    offending key."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        found = json_problem(value, kind, frozenset())
        if found is None:  # pragma: no cover - json failed for a reason the walk did not see
            raise InvalidMetadataError(f"{kind} is not JSON-serialisable: {exc}") from exc
        path, problem = found
        raise InvalidMetadataError(f"{kind} is not JSON-serialisable: {path} {problem}") from exc
    return json.loads(text)


def json_dict(kind: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidMetadataError(
            f"{kind} must be a dict of JSON values, not {type(value).__name__}"
        )
    result: dict[str, Any] = to_json(kind, dict(value))
    return result


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_metric(value: Any) -> Any:
    """Metrics may be NaN or infinite (a diverging loss); JSON columns cannot hold those, so
    they are stored as the strings "NaN", "Infinity" and "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {k: encode_metric(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_metric(v) for v in value]
    return value


def decode_metric(value: Any) -> Any:
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: decode_metric(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_metric(v) for v in value]
    return value


def check_text(kind: str, value: object, *, max_length: int = 128) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > max_length
        or has_control(value)
    ):
        raise InvalidNameError(f"invalid {kind} {value!r}: use 1-{max_length} printable characters")
    return value


def check_int(kind: str, value: object, *, minimum: int | None = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{kind} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{kind} must be at least {minimum}, not {value}")
    return value


def check_str(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{kind} must be a string, not {type(value).__name__}")
    return value


def check_page(limit: int, offset: int) -> None:
    check_int("limit", limit)
    check_int("offset", offset)


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


VERSION_ORDERS = ("-version", "version", "-created_at", "created_at")


def check_order(order: object) -> tuple[bool, str]:
    """A version listing's order: (descending, "version" or "created_at")."""
    if not isinstance(order, str) or order not in VERSION_ORDERS:
        raise InvalidInputError(
            f"invalid order {order!r}: use one of {', '.join(VERSION_ORDERS)} "
            "('-' means newest first)"
        )
    return order.startswith("-"), order.lstrip("-")


def check_aliases(aliases: Sequence[str] | None) -> list[str]:
    if aliases is None:
        return []
    if isinstance(aliases, str):
        raise InvalidInputError(f"aliases must be a list of strings, not the string {aliases!r}")
    return unique(check_alias(a) for a in aliases)


def check_tags(tags: Sequence[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise InvalidInputError(f"tags must be a list of strings, not the string {tags!r}")
    return unique(check_tag(t) for t in tags)


def listing(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = total - min(len(names), _SHOWN)
    return shown + (f" (and {more} more)" if more > 0 else "")
