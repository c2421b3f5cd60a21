"""``os.walk`` without recursion: Python 3.11's recursive ``os.walk`` raises RecursionError on
a folder nested about a thousand levels deep; this walks any depth with a stack.

Like ``os.walk(root, topdown, followlinks=False)``: yields ``(dirpath, dirnames, filenames)``;
a symlink to a folder is listed in ``dirnames`` and never entered; unreadable folders are
skipped. With ``topdown`` a caller may prune ``dirnames`` in place."""

from __future__ import annotations

import os
from collections.abc import Iterator


def _split(folder: str) -> tuple[list[str], list[str]] | None:
    dirs: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(entry.name)
    except OSError:
        return None
    return dirs, files


def walk(
    root: str | os.PathLike[str], topdown: bool = True
) -> Iterator[tuple[str, list[str], list[str]]]:
    top = os.fspath(root)
    if topdown:
        stack = [top]
        while stack:
            folder = stack.pop()
            found = _split(folder)
            if found is None:
                continue
            dirs, files = found
            yield folder, dirs, files
            for name in reversed(dirs):  # pop in listing order
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    stack.append(path)
        return
    # bottom-up: a folder is yielded after everything below it
    pending: list[tuple[str, list[str], list[str], bool]] = [(top, [], [], False)]
    while pending:
        folder, dirs, files, expanded = pending.pop()
        if expanded:
            yield folder, dirs, files
            continue
        found = _split(folder)
        if found is None:
            continue
        dirs, files = found
        pending.append((folder, dirs, files, True))
        for name in reversed(dirs):
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                pending.append((path, [], [], False))


__all__ = ["walk"]
