"""The run this process is logging to: `cairn.init` sets it, its `finish` clears it.

Kept apart from `cairn.sdk.run` so that `cairn.sdk.artifact` (an edit records the current run
as its author; a version names the runs that logged and used it) never imports the module that
imports it: `run` registers how a stored run is opened and a new one started (`set_runs`) when
it is loaded, and `cairn/__init__.py` loads it before anything can ask.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cairn.core.records import RunInfo

if TYPE_CHECKING:  # type names only: at run time this module imports nothing of the SDK
    from cairn.sdk.backend import Backend
    from cairn.sdk.run import Run

_current: Run | None = None
_lock = threading.RLock()
_run_view: Callable[[RunInfo, Backend], Run] | None = None
_start_run: Callable[[str | None, str], Run] | None = None


def current() -> Run | None:
    """The active run of this process (None before `cairn.init` and after its `finish`)."""
    return _current


def lock() -> threading.RLock:
    """Held while the current run is replaced or cleared."""
    return _lock


def set_current(run: Run | None) -> None:
    """Make `run` the current run; call with `lock()` held."""
    global _current
    _current = run


def clear_current(run: Run) -> None:
    """Forget `run` if it is the current run."""
    with _lock:
        if _current is run:
            set_current(None)


def set_runs(
    view: Callable[[RunInfo, Backend], Run], start: Callable[[str | None, str], Run]
) -> None:
    """How a stored run is opened (`cairn.sdk.run.run_view`) and a run started
    (`cairn.init(project, job_type)`)."""
    global _run_view, _start_run
    _run_view, _start_run = view, start


def run_view(info: RunInfo, backend: Backend) -> Run:
    """A read-only `Run` handle on a stored run."""
    assert _run_view is not None, "cairn.sdk.run registers it when it is imported"
    return _run_view(info, backend)


def start_run(project: str | None, job_type: str) -> Run:
    """Start a run, as `cairn.init(project=project, job_type=job_type)` does."""
    assert _start_run is not None, "cairn.sdk.run registers it when it is imported"
    return _start_run(project, job_type)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
