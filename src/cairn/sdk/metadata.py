"""An artifact's metadata: JSON-like values, converted and copied on the way in.

Values are converted when they are assigned (``Artifact(metadata=...)``, ``art.metadata = ...``,
``art.metadata["k"] = ...``), so a bad value is refused where it is set and later edits to the
caller's own objects never change what gets logged:

- numpy scalars become Python numbers (``np.float32(0.5)`` -> ``0.5``), numpy arrays nested
  lists (``arr.tolist()``), tuples lists, ``datetime``/``date`` ISO 8601 strings;
- NaN and ±Inf are kept as floats, like ``run.log``: they are stored as the strings "NaN",
  "Infinity" and "-Infinity" (which JSON columns can hold) and read back as floats;
- anything else that is not JSON (a set, an object, a non-string key, a value containing
  itself) raises `InvalidMetadataError` naming the key.

Dicts inside the metadata are `Metadata` too, so ``art.metadata["nested"]["a"] = x`` is
converted (and checked) as well. Lists are plain lists: what is appended to them is checked
when the artifact is logged or saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from cairn.errors import InvalidMetadataError
from cairn.service.validate import decode_metric, encode_metric

_SCALARS = (str, bool, int, type(None))


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "tolist")


def convert(value: Any, where: str, parents: frozenset[int] = frozenset()) -> Any:
    """A fresh JSON-like copy of ``value`` (dicts as `Metadata`), or InvalidMetadataError
    naming ``where`` (e.g. ``metadata['a'][0]``)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        return float(value)
    if _is_numpy(value):
        # a numpy scalar gives a Python number, an array nested lists
        return convert(value.tolist(), where, parents)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        if id(value) in parents:
            raise InvalidMetadataError(f"{where} contains itself")
        inner = parents | {id(value)}
        out = Metadata()
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadataError(
                    f"{where} has the key {key!r} of type {type(key).__name__}: metadata keys "
                    "are strings"
                )
            dict.__setitem__(out, key, convert(item, f"{where}[{key!r}]", inner))
        return out
    if isinstance(value, list | tuple):
        if id(value) in parents:
            raise InvalidMetadataError(f"{where} contains itself")
        inner = parents | {id(value)}
        return [convert(item, f"{where}[{i}]", inner) for i, item in enumerate(value)]
    raise InvalidMetadataError(
        f"{where} is a {type(value).__name__}, which is not JSON-serialisable: convert it to "
        "str, int, float, bool, None, a list or a dict (e.g. sorted(x), str(x))"
    )


def to_metadata(value: Any, what: str = "metadata") -> Metadata:
    """``value`` (a mapping or None) as a new `Metadata`."""
    if value is None:
        return Metadata()
    if not isinstance(value, Mapping):
        raise InvalidMetadataError(
            f"{what} must be a dict of JSON values, got {type(value).__name__}"
        )
    out: Metadata = convert(value, what)
    return out


def stored(value: Any) -> dict[str, Any]:
    """What the registry keeps for ``value``: plain dicts and lists, NaN and ±Inf as strings.
    Re-checks everything (a list may have been appended to since it was assigned)."""
    plain: dict[str, Any] = encode_metric(_plain(to_metadata(value)))
    return plain


def loaded(value: dict[str, Any]) -> Metadata:
    """Metadata read from the registry (the strings "NaN", "Infinity", "-Infinity" as floats)."""
    return to_metadata(decode_metric(value))


def same(a: Any, b: Any) -> bool:
    """Deep equality as stored (NaN equals NaN)."""
    return bool(stored(a) == stored(b))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Metadata(dict[str, Any]):
    """A dict that converts (and checks) what is put in it; see the module's docstring."""

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise InvalidMetadataError(
                f"metadata keys are strings, not {type(key).__name__} ({key!r})"
            )
        super().__setitem__(key, convert(value, f"metadata[{key!r}]"))

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        converted = to_metadata(items)  # all or nothing: a bad value changes nothing
        for key, value in converted.items():
            super().__setitem__(key, value)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> Metadata:  # type: ignore[override,misc]
        self.update(other)
        return self

    def copy(self) -> Metadata:
        return to_metadata(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Metadata:
        return to_metadata(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (to_metadata, (dict(self),))


__all__ = ["Metadata", "convert", "loaded", "same", "stored", "to_metadata"]
