"""A run's config: a dict whose keys are also attributes, as W&B scripts use it.

``run.config["lr"]``, ``run.config.lr``, ``run.config.lr = 0.1``,
``run.config.update({...})`` (or an argparse ``Namespace``) and
``run.config.setdefaults({...})`` all edit the same dict, which is saved with the run when it
finishes. Values are converted and checked when they are set, like an artifact's metadata
(numpy scalars and arrays, tuples, dates; see `cairn.sdk.metadata`), so a bad value is refused
where it is set rather than when the run finishes; NaN and ±Inf are refused (a config is the
run's settings, not a measurement). Changing a value is allowed (W&B asks for
``allow_val_change=True``; it is accepted and changes nothing here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cairn.errors import InvalidMetadataError
from cairn.sdk.metadata import convert


def _plain(value: Any, where: str) -> Any:
    """``value`` converted (see `convert`), as plain dicts and lists, every float finite."""
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMetadataError(
            f"{where} is {value}: a config holds finite numbers (log a diverging value with "
            "run.log or put it in the summary)"
        )
    return value


def _items(value: Any, what: str) -> dict[str, Any]:
    """A mapping or an argparse ``Namespace`` (anything with ``__dict__``) as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return dict(vars(value))
    raise InvalidMetadataError(
        f"{what} must be a dict of JSON values (or an argparse Namespace), not "
        f"{type(value).__name__}"
    )


class Config(dict[str, Any]):
    """A run's config (see the module's docstring). Keys that are not identifiers (or that
    start with ``_``, or shadow a dict method such as ``items``) are read with ``config[key]``."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if args or kwargs:
            self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(*self._checked(key, value))

    @staticmethod
    def _checked(key: Any, value: Any) -> tuple[str, Any]:
        if not isinstance(key, str):
            raise InvalidMetadataError(
                f"config keys are strings, not {type(key).__name__} ({key!r})"
            )
        where = f"config[{key!r}]"
        return key, _plain(convert(value, where), where)

    def update(  # type: ignore[override]
        self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any
    ) -> None:
        """Set every key of ``d`` (a dict or an argparse Namespace) and ``kwargs``; all or
        nothing: a bad value changes nothing. ``allow_val_change`` is accepted for W&B
        scripts (a value may always change)."""
        items = _items(d, "config.update()") if d is not None else {}
        items.update(kwargs)
        checked = dict(self._checked(k, v) for k, v in items.items())
        for key, value in checked.items():
            super().__setitem__(key, value)

    def setdefaults(self, d: Any) -> None:
        """Set the keys of ``d`` that are not set yet (W&B's ``config.setdefaults``)."""
        self.update({k: v for k, v in _items(d, "config.setdefaults()").items() if k not in self})

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> Config:  # type: ignore[override,misc]
        self.update(other)
        return self

    def as_dict(self) -> dict[str, Any]:
        """A plain copy (W&B's ``config.as_dict()``)."""
        return dict(self)

    def copy(self) -> Config:
        return Config(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"config has no key {name!r} (keys: {', '.join(sorted(self)) or 'none'})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"config keys set as attributes cannot start with '_': {name!r}")
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Config, (dict(self),))


def to_config(value: Any) -> Config:
    """``value`` (None, a dict or an argparse Namespace) as a new, checked `Config`."""
    return Config() if value is None else Config(_items(value, "config"))


__all__ = ["Config", "to_config"]
