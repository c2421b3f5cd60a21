"""Let pyarrow drop its last hold on a ``cairn://`` filesystem before the interpreter ends.

``pandas.read_parquet("cairn://...")`` hands the filesystem to pyarrow, which wraps it in a
``PyFileSystem``. The scan that used it can return while one of pyarrow's worker threads still
owns that wrapper; when the thread lets go during interpreter shutdown it must take the GIL,
Python stops the thread, and the C++ runtime aborts the process ("terminate called without an
active exception", exit 134) after the script has done all its work. This is pyarrow's race
(apache/arrow#34314, #50482) and any fsspec filesystem hits it; at exit we wait, at most
``_WAIT`` seconds, until no pyarrow wrapper of a Cairn filesystem is alive.
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
import time
import weakref
from typing import Any

_WAIT = 2.0
_POLL = 0.005

_filesystems: list[weakref.ref[Any]] = []  # fsspec hashes a filesystem only after __init__
_lock = threading.Lock()
_registered = False


def watch(fs: Any) -> None:
    """Wait at exit while pyarrow still wraps ``fs``."""
    global _registered
    with _lock:
        _filesystems.append(weakref.ref(fs))
        if not _registered:
            atexit.register(wait_for_arrow)
            _registered = True


def _wrapped(fs: Any, handler_type: type) -> bool:
    return any(isinstance(o, handler_type) for o in gc.get_referrers(fs))


def wait_for_arrow(timeout: float = _WAIT) -> bool:
    """True once no pyarrow wrapper of a watched filesystem is alive (False on timeout)."""
    arrow_fs = sys.modules.get("pyarrow.fs")
    if arrow_fs is None:
        return True
    handler_type = getattr(arrow_fs, "FSSpecHandler", None)
    if handler_type is None:
        return True
    deadline = time.monotonic() + timeout
    while True:
        alive = [fs for fs in (ref() for ref in list(_filesystems)) if fs is not None]
        if not any(_wrapped(fs, handler_type) for fs in alive):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
