"""What the training callbacks (Lightning, Hugging Face) share: the record of one logged
checkpoint, the monitored metric's direction, and values made fit for a run's config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from cairn.errors import InvalidInputError

__all__ = ["Checkpoint", "better", "jsonable", "resolve_mode", "scalar"]


@dataclass
class Checkpoint:
    """One logged checkpoint: its version, size and the bytes it added to the store."""

    epoch: float
    version: str
    size: int
    new_bytes: int
    best: bool
    step: int | None = None

    @property
    def reused(self) -> float:
        """The share of its bytes already stored (0..1)."""
        return max(0.0, 1 - self.new_bytes / self.size) if self.size else 1.0


def resolve_mode(monitor: str, mode: str) -> str:
    """ "min" or "max" for ``monitor``; "auto" is "max" for accuracy-like names, else "min"."""
    if mode not in ("auto", "min", "max"):
        raise InvalidInputError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) else "min"


def better(value: float | None, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` (any finite value beats none)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def scalar(value: Any) -> float | None:
    """A logged value as a float: Python numbers and one-element tensors or arrays (None for
    anything else, or a boolean)."""
    if isinstance(value, bool):
        return None
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    if callable(numel):
        try:
            if int(numel()) != 1:
                return None
        except (TypeError, ValueError):
            return None
    elif isinstance(numel, int) and numel != 1:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def jsonable(value: Any) -> Any:
    """``value`` as a run's config can hold it: JSON values as they are (inside dicts and
    lists too), anything else (a module, a path, an enum, NaN) as its text."""
    if isinstance(value, Enum):
        value = value.value
    elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # NumPy, torch scalars
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)
