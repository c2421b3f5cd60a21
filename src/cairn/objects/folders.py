"""Whole folders a log takes from an earlier log without looking at each file again.

A folder of plain files (no subfolders, no symlinks) is summed up by a signature: a digest of
its file names and of each file's (device, inode, size, mtime, ctime), the hash cache's key.
Once a log has stored such a folder's tree, the hash cache remembers, per store, the folder on
disk -> (signature, tree object, size, file count, the store's drop count). A later log that
finds the same signature, while the store has dropped nothing since, puts that tree in the new
version as it is: no hash-cache lookup, tree entry or per-file record for any of its files,
only the stat of each, which any log needs.

Only stores that count their drops (`ObjectStore.generation` is not None: a local store)
qualify: elsewhere a tree object found in the store says nothing of the files below it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from cairn.core.digest import hash_bytes

MAX_FILES = 65_536  # a larger folder is taken file by file: its stats are not held at once


@dataclass(frozen=True)
class Listed:
    """A folder of plain files as the walk listed it."""

    path: str  # inside the artifact ('a/b'), never the root
    root: str  # the folder on disk
    names: list[str]  # its files, sorted


@dataclass(frozen=True)
class Stated:
    """A listed folder with each file's status and the folder's signature."""

    listed: Listed
    stats: list[os.stat_result]
    sig: str
    newest: int  # the latest mtime of its files (ns)


def stat_folder(listed: Listed) -> Stated | None:
    """Every file's status and the folder's signature; None when a file is gone, unreadable
    or no longer a plain file (the caller then takes the files one by one, which says what is
    wrong with which)."""
    try:
        fd = os.open(listed.root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        # relative to the folder: the kernel resolves the folder's path once, not per file
        stats = [os.stat(name, dir_fd=fd, follow_symlinks=False) for name in listed.names]
    except OSError:
        return None
    finally:
        os.close(fd)
    if not all(stat.S_ISREG(st.st_mode) for st in stats):
        return None
    keys = [
        (name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        for name, st in zip(listed.names, stats, strict=True)
    ]
    newest = max(st.st_mtime_ns for st in stats)
    return Stated(listed, stats, hash_bytes(repr(keys).encode()), newest)


__all__ = ["MAX_FILES", "Listed", "Stated", "stat_folder"]
