"""Walk a folder for add_dir: regular files under it, following symlinks, refusing loops."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from cairn.core.names import check_path
from cairn.errors import SourceFileError
from cairn.objects.folders import MAX_FILES, Listed


@dataclass(frozen=True)
class FolderSource:
    """A folder added to a draft whole (``add_dir``), walked again when the draft is logged."""

    prefix: str  # where its files go inside the artifact: '' (the root) or 'name/'
    root: str  # the folder on disk, absolute
    files: int  # how many files it held when it was added
    added_ns: int = 0  # when it was added (a file whose status changed since is refused)

    def overlaps(self, path: str) -> bool:
        """Whether a file or folder at ``path`` ('' for the root) could clash with a file of
        this folder."""
        if not self.prefix or not path:
            return True
        folder = self.prefix[:-1]
        return path == folder or path.startswith(self.prefix) or folder.startswith(path + "/")

    def counted(self) -> FolderSource:
        """This folder after a full walk: every name checked, every problem (a loop, a
        folder that cannot be read, a socket) raised now rather than when it is logged."""
        added = time.time_ns()
        n = 0
        for found in self.walk_folders(whole=True):  # a folder of plain files counts at once
            n += len(found.names) if isinstance(found, Listed) else 1
        return replace(self, files=n, added_ns=added)

    def walk(self) -> Iterator[tuple[str, str]]:
        """(path inside the artifact, file on disk) for each file, folders contiguous and
        names sorted within each folder (the order of a tree)."""
        for found in self.walk_folders(whole=False):
            assert not isinstance(found, Listed)
            yield found

    def walk_folders(self, *, whole: bool = True) -> Iterator[tuple[str, str] | Listed]:
        """As `walk`, but (with ``whole``) a folder of plain files below the root comes as one
        `Listed` at its place in tree order instead of file by file."""
        prefix = self.prefix
        for found in walk_tree(Path(self.root), whole=whole):
            if isinstance(found, Listed):
                yield replace(found, path=prefix + found.path)
                continue
            rel, source = found
            if "\\" in rel:
                check_path(prefix + rel)  # raises the usual InvalidPathError
            yield prefix + rel, source


def walk_files(root: Path) -> Iterator[tuple[str, str]]:
    """Yield (relative '/'-path, absolute path) for every file below ``root``, sorted (see
    `walk_tree`)."""
    for found in walk_tree(root, whole=False):
        assert not isinstance(found, Listed)
        yield found


def walk_tree(root: Path, *, whole: bool) -> Iterator[tuple[str, str] | Listed]:
    """Yield (relative '/'-path, absolute path) for every file below ``root``, sorted; with
    ``whole``, a folder below the root holding only plain files (and not too many) comes as
    one `Listed` instead.

    Plain entries are classified from the directory listing alone (no stat per file); only
    symlinks are followed with a stat, and a symlink that leads back to a folder above it is
    refused.
    """
    try:
        root_st = os.stat(root)
    except FileNotFoundError:
        raise SourceFileError(f"folder {root} does not exist; check the path", str(root)) from None
    except OSError as exc:
        raise SourceFileError(f"cannot read folder {root}: {exc.strerror}", str(root)) from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise SourceFileError(f"{root} is not a folder; use add_file()", str(root))
    yield from _walk(str(root), "", {(root_st.st_dev, root_st.st_ino)}, whole)


_FILE, _DIR, _OTHER = 0, 1, 2  # what a listing says an entry is, without a stat


def _listing(folder: str) -> tuple[list[str], dict[str, int]]:
    """The folder's entry names, sorted, and the kind of those that are not plain files. Only
    the names are held: a folder of a million files costs its names, not a million DirEntry
    objects."""
    names: list[str] = []
    special: dict[str, int] = {}  # folders, symlinks and anything else
    try:
        with os.scandir(folder) as it:
            for entry in it:
                names.append(entry.name)
                if not entry.is_file(follow_symlinks=False):  # not a plain file (one call)
                    special[entry.name] = _DIR if entry.is_dir(follow_symlinks=False) else _OTHER
    except PermissionError:
        raise SourceFileError(
            f"folder {folder} is not readable; fix its permissions", folder
        ) from None
    names.sort()
    return names, special


def _kinds(names: list[str], special: dict[str, int]) -> Iterator[tuple[str, int]]:
    return ((name, special.get(name, _FILE)) for name in names)


def _walk(
    folder: str, prefix: str, ancestors: set[tuple[int, int]], whole: bool
) -> Iterator[tuple[str, str] | Listed]:
    # depth-first with a stack of open listings, not recursion: a folder nested thousands of
    # levels deep is walked like any other
    stack = [(_kinds(*_listing(folder)), folder, prefix, frozenset(ancestors))]
    while stack:
        entries, here, prefix, above = stack[-1]
        found = next(entries, None)
        if found is None:
            stack.pop()
            continue
        name, kind = found
        rel = prefix + name
        path = os.path.join(here, name)
        if kind == _FILE:
            yield rel, path
            continue
        if kind == _DIR:
            names, special = _listing(path)
            # (a name with a backslash is refused file by file)
            if (
                whole
                and not special
                and 0 < len(names) <= MAX_FILES
                and not any("\\" in n for n in names)
            ):
                yield Listed(rel, path, names)
                continue
            st = os.stat(path, follow_symlinks=False)
            below = above | {(st.st_dev, st.st_ino)}
            stack.append((_kinds(names, special), path, rel + "/", below))
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise SourceFileError(
                f"{path} is a symlink to something that does not exist; remove or fix it",
                path,
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SourceFileError(f"{path} is a symlink loop; remove it", path) from None
            raise SourceFileError(f"cannot read {path}: {exc.strerror}", path) from None
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in above:
                raise SourceFileError(
                    f"{path} is a symlink loop (it leads back to a folder above it); remove it",
                    path,
                )
            stack.append((_kinds(*_listing(path)), path, rel + "/", above | {key}))
        elif stat.S_ISREG(st.st_mode):
            yield rel, path
        else:
            raise SourceFileError(
                f"{path} is not a regular file (a socket, FIFO or device); remove it or "
                "add the files you want one by one",
                path,
            )
