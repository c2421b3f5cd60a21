"""Walk a folder for add_dir: regular files under it, following symlinks, refusing loops."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cairn.errors import SourceFileError


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (relative '/'-path, absolute path) for every file below ``root``, sorted."""
    try:
        root_st = os.stat(root)
    except FileNotFoundError:
        raise SourceFileError(f"folder {root} does not exist; check the path", str(root)) from None
    except OSError as exc:
        raise SourceFileError(f"cannot read folder {root}: {exc.strerror}", str(root)) from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise SourceFileError(f"{root} is not a folder; use add_file()", str(root))
    yield from _walk(root, "", {(root_st.st_dev, root_st.st_ino)})


def _walk(folder: Path, prefix: str, ancestors: set[tuple[int, int]]) -> Iterator[tuple[str, Path]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        raise SourceFileError(
            f"folder {folder} is not readable; fix its permissions", str(folder)
        ) from None
    for entry in entries:
        path = Path(entry.path)
        rel = prefix + entry.name
        try:
            st = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            raise SourceFileError(
                f"{path} is a symlink to something that does not exist; remove it or fix it",
                str(path),
            ) from None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                raise SourceFileError(f"{path} is a symlink loop; remove it", str(path)) from None
            raise SourceFileError(f"cannot read {path}: {exc.strerror}", str(path)) from None
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                raise SourceFileError(
                    f"{path} is a symlink loop (it leads back to a folder above it); remove it",
                    str(path),
                )
            yield from _walk(path, rel + "/", ancestors | {key})
        elif stat.S_ISREG(st.st_mode):
            yield rel, path
        else:
            raise SourceFileError(
                f"{path} is not a regular file (a socket, FIFO or device); remove it or "
                "add the files you want one by one",
                str(path),
            )
