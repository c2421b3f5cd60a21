"""Whole folders a log takes from an earlier log without looking at each file again.

A folder of plain files (no subfolders, no symlinks) is summed up by a signature: a digest of
its file names and of each file's (device, inode, size, mtime, ctime), the hash cache's key.
Once a log has stored such a folder's tree, the hash cache remembers, per store, the folder on
disk -> (signature, tree object, size, file count, the store's drop count). A later log that
finds the same signature, while the store has dropped nothing since, puts that tree in the new
version as it is: no hash-cache lookup, tree entry or per-file record for any of its files,
only the stat of each, which any log needs.

Only stores that count their drops (`ObjectStore.generation` is not None: a local store, or a
server whose store is one) qualify: elsewhere a tree object found in the store says nothing of
the files below it.

Downloads use the same records the other way round (`Downloaded`): a folder of the version
whose place in the download folder has a signature recorded with that folder's tree (by a log
of it, or by an earlier download) already holds exactly its files, and is skipped whole; after
a download, each folder it left holding exactly a folder's files is recorded.
"""

from __future__ import annotations

import array
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from cairn.core.digest import hash_bytes
from cairn.core.names import check_path
from cairn.errors import InvalidPathError
from cairn.objects.hashcache import CachedFolder, HashCache, stat_key
from cairn.objects.tree import Dir, Entry, File

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
    newest = max(st.st_mtime_ns for st in stats)
    return Stated(listed, stats, _signature(listed.names, stats), newest)


def _signature(names: list[str], stats: list[os.stat_result]) -> str:
    """BLAKE3 of the names (NUL-separated) and each file's hash-cache key as 64-bit integers
    (built in C: a million files cost a fraction of their stats)."""
    keys = itertools.chain.from_iterable(
        (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for st in stats
    )
    try:
        numbers = array.array("q", keys).tobytes()
    except OverflowError:  # a device number beyond 63 bits
        numbers = repr([stat_key(st) for st in stats]).encode()
    text = "\0".join(names).encode("utf-8", "surrogateescape")
    return hash_bytes(text + b"\0\0" + numbers)


def stat_listing(path: str, root: str) -> Stated | None:
    """`stat_folder` of the folder ``root`` (at ``path`` inside the artifact) as it is now;
    None unless it holds plain files only (at most MAX_FILES)."""
    names: list[str] = []
    try:
        with os.scandir(root) as it:
            for entry in it:
                if not entry.is_file(follow_symlinks=False):
                    return None
                names.append(entry.name)
    except OSError:
        return None
    if not names or len(names) > MAX_FILES:
        return None
    names.sort()
    return stat_folder(Listed(path, root, names))


@dataclass
class _Seen:
    """A folder of the version as a download's walk saw it."""

    dir: Dir
    files: int = 0  # files directly in it
    plain: bool = True  # whether it holds plain files only (no folder, no reference)


#: the store a download's records name: what the folder holds is known, not that any store
#: holds it (a log never takes such a record)
DOWNLOADED = ""

ProgressFn = Callable[[int, int], None]


class Downloaded:
    """The folders of one download into ``dest``: which of the version's folders are there
    whole already (their files are then not walked at all), and, once the download is done,
    recording those it left holding exactly a folder's files."""

    def __init__(self, dest: str) -> None:
        self.cache: HashCache | None = None
        self.progress: ProgressFn = lambda files, nbytes: None
        self._dest = dest
        self._in_place: dict[str, bool] = {}
        self._seen: dict[str, _Seen] = {}  # the version's folders the last walk saw

    def in_place(self, path: str, entry: Dir) -> bool:
        """Whether the folder at ``path`` holds exactly ``entry``'s files (asked once)."""
        known = self._in_place.get(path)
        if known is None:
            known = self._check(path, entry)
            self._in_place[path] = known
            if known:
                self.progress(entry.count, entry.size)
        return known

    def _check(self, path: str, entry: Dir) -> bool:
        if self.cache is None or entry.count > MAX_FILES:
            return False
        try:
            if check_path(path) != path:
                return False
        except InvalidPathError:
            return False  # the download refuses the version's paths itself
        root = os.path.join(self._dest, path)
        sigs = self.cache.folder_holds(root, entry.digest)
        if not sigs:
            return False
        stated = stat_listing(path, root)
        return stated is not None and stated.sig in sigs

    def walk(self) -> None:
        """A walk of the version begins (the download walks it once or twice)."""
        self._seen = {}

    def saw(self, path: str, entry: Entry) -> None:
        up = self._seen.get(path.rpartition("/")[0])
        if up is not None:
            if isinstance(entry, File):
                up.files += 1
            else:
                up.plain = False
        if isinstance(entry, Dir) and not self._in_place.get(path, False):
            self._seen[path] = _Seen(entry)

    def remember(self) -> None:
        """After the download: record each folder of plain files of the version that its
        place in ``dest`` now holds exactly (written by this download or found in place,
        every file checked), so that the next download skips it whole."""
        if self.cache is None:
            return
        rows = []
        for path, seen in self._seen.items():
            count = seen.dir.count
            if not seen.plain or seen.files != count or count > MAX_FILES:
                continue
            root = os.path.join(self._dest, path)
            stated = stat_listing(path, root)
            # as many plain files as the folder has, all of which the download put there:
            # nothing else is in it
            if stated is not None and len(stated.listed.names) == count:
                rows.append(
                    (root, CachedFolder(stated.sig, seen.dir.digest, seen.dir.size, count, -1))
                )
        self.cache.put_folders(DOWNLOADED, rows)


__all__ = [
    "DOWNLOADED",
    "MAX_FILES",
    "Downloaded",
    "Listed",
    "Stated",
    "stat_folder",
    "stat_listing",
]
