"""Checks of user-given values the SDK makes before anything is stored."""

from __future__ import annotations

import json
from typing import Any

from cairn.errors import InvalidMetadataError


def check_json(value: Any, what: str, *, allow_nan: bool = False) -> dict[str, Any]:
    """``value`` as a dict of JSON values, or InvalidMetadataError naming the bad key.
    ``allow_nan`` lets NaN and ±Inf floats through (metrics: a diverging loss is data)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidMetadataError(
            f"{what} must be a dict of JSON values, got {type(value).__name__}"
        )
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidMetadataError(f"{what} keys must be strings, got {key!r}")
        try:
            json.dumps(item, allow_nan=allow_nan)
        except (TypeError, ValueError) as exc:
            raise InvalidMetadataError(
                f"{what}[{key!r}] is not JSON-serialisable ({exc}); convert it to str, int, "
                "float, bool, list or dict"
            ) from None
    return dict(value)


__all__ = ["check_json"]
