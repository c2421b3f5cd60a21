"""Pause Python's cyclic garbage collector around bulk work.

Logging or downloading 100,000 files creates millions of small objects, none of them in
reference cycles; each time the allocation count crosses the collector's threshold it walks
them all again. Pausing it for the length of one call saved ~12% of a 20,000-file re-log.
The collector is turned back on afterwards (if it was on), and reference counting frees
everything as usual meanwhile.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper
