"""Writing to open files."""

from __future__ import annotations

import errno
import os


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less). Returns its length."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
    return len(data)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (``FileExistsError``), atomically where
    the kernel and filesystem offer ``renameat2(RENAME_NOREPLACE)``; elsewhere a path that
    appears between the check and the rename may still be replaced (an empty folder at most,
    for a folder)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is not None:
        if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), os.fspath(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)


def open_locked(path: str | os.PathLike[str], flags: int) -> int | None:
    """``path`` opened with ``flags`` and locked (``flock``, exclusive) without waiting; None
    when it cannot be opened or another process holds the lock (its writer lives)."""
    import fcntl

    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
