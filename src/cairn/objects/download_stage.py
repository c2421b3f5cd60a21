"""The hidden folder a download into a new folder is written in, beside it, before it is renamed
into place (`Materializer._write_staged`): its name, its lock, and removing stopped ones.

``DEST`` is staged as ``.DEST.cairn-download-KEY`` in the same parent, ``KEY`` 16 hex digits
naming what is downloaded (the same files, the same key): a stopped download of the same files
resumes from it. A live download holds its folder locked (``flock``); an unlocked one is a
stopped download's, which a download of something else into ``DEST`` removes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

from cairn.core.digest import hash_bytes
from cairn.core.fileio import open_locked
from cairn.errors import DownloadConflictError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SUFFIX = ".cairn-download-"
_KEY = re.compile(r"[0-9a-f]{16}\Z")


def can_stage(dest: Path) -> bool:
    """Whether ``dest`` is a name that can get a hidden sibling (not ``.``, ``..`` or ``/``)."""
    return dest.name not in ("", ".", "..")


def _prefix(dest: Path) -> str:
    raw = os.fsencode(dest.name)
    if len(raw) <= 200:  # the hidden name must fit the 255 bytes a name may have
        return f".{dest.name}{_SUFFIX}"
    return f".{os.fsdecode(raw[:160])}{hash_bytes(raw)[7:23]}{_SUFFIX}"


def stage_of(dest: Path, key: str) -> Path:
    return dest.parent / (_prefix(dest) + hash_bytes(key.encode())[7:23])


def lock(stage: Path, dest: Path) -> int | None:
    """Make ``stage`` if needed and lock it; returns the locked descriptor, or None when
    ``dest`` exists by then (another download of the same files just finished): the caller
    writes in place. Raises `DownloadConflictError` while another download holds it."""
    for _ in range(5):
        with contextlib.suppress(FileExistsError):
            stage.mkdir()
        fd = os.open(stage, _DIR_FLAGS)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DownloadConflictError(
                f"another download into {dest} is running (it writes {stage}): wait for it to "
                "end, or download somewhere else",
                conflicts=[],
            ) from None
        held = os.fstat(fd)
        try:
            now = os.lstat(stage)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            os.close(fd)  # renamed into place or removed between the open and the lock
            continue
        if held.st_uid != os.geteuid():  # a shared folder (/tmp): someone could change files
            os.close(fd)
            raise DownloadConflictError(
                f"{stage} belongs to another user: remove it, or download somewhere else",
                conflicts=[],
            )
        if os.path.lexists(dest):
            _remove_locked(stage, fd)
            os.close(fd)
            return None
        return fd
    raise DownloadConflictError(
        f"{stage} keeps being renamed or removed by another download into {dest}: wait for "
        "it to end, or download somewhere else",
        conflicts=[],
    )


def remove_stopped(dest: Path, keep: Path | None = None) -> None:
    """Remove the hidden folders of stopped downloads into ``dest`` (unlocked), except
    ``keep``. Only names Cairn gives are considered: ``.DEST.cairn-download-`` and a key."""
    prefix = _prefix(dest)
    try:
        with os.scandir(dest.parent) as found:  # only stage names are kept, not the listing
            names = [
                e.name
                for e in found
                if e.name.startswith(prefix)
                and _KEY.match(e.name, len(prefix))
                and (keep is None or e.name != keep.name)
            ]
    except FileNotFoundError:
        return
    for name in names:
        path = dest.parent / name
        fd = open_locked(path, _DIR_FLAGS)
        if fd is None:
            continue  # a live download's (or gone)
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                _remove_locked(path, fd)
        finally:
            os.close(fd)


def _remove_locked(path: Path, fd: int) -> None:
    """Remove the folder ``fd`` (locked by the caller) if ``path`` still names it."""
    held = os.fstat(fd)
    parent = os.open(path.parent, _DIR_FLAGS)
    try:
        now = os.lstat(path.name, dir_fd=parent)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            shutil.rmtree(path.name, ignore_errors=True, dir_fd=parent)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)
