"""Downloads: write a version's files into a folder from the object store, verified, without
ever destroying a user's file.

Safety rules (docs/api.md, "Downloading"):

* Nothing is written outside the target folder: folders below it are opened one level at a time
  without following symlinks (``O_NOFOLLOW`` relative to the parent's descriptor), so a symlinked
  sub-folder is never written through, and a symlink where the version has a file is replaced
  (with ``overwrite``), never followed.
* A file already in place is **unmodified** when its content is the version's, or when the hash
  cache knows it in its current state (same device, inode, size, mtime and ctime): Cairn wrote it
  in an earlier download, or read it for a log, and nothing changed it since. Unmodified files are
  replaced freely. Any other file that differs from the version is **modified**: the download
  refuses (`DownloadConflictError`, listing every such path) before writing anything, unless
  ``overwrite=True``. Clashes (a folder where the version has a file, a file or link where it has
  a folder) are listed the same way; ``overwrite`` replaces files and links in the way and empty
  folders, never a folder with content.
* Each file is written to a temp name beside its target, locked (``flock``) while it is written,
  hashed, and renamed into place: a file at its final name is always complete and verified. A
  temp file whose writer died (``kill -9``, power loss) is unlocked; the next download into that
  folder removes it. A full disk raises `DiskFullError` and leaves no temp file.
* A folder that does not exist yet is written whole in a hidden folder beside it, then renamed
  into place (`Materializer._write_staged`): it appears complete or not at all.

A file already in place whose (device, inode, size, mtime, ctime) the hash cache knows with the
right digest is left alone, so a second download of the same version only stats each file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from cairn.core.digest import hash_bytes, new_hasher
from cairn.core.fileio import open_locked, pwrite_all, rename_noreplace
from cairn.core.names import check_path
from cairn.errors import (
    DiskFullError,
    DownloadConflictError,
    IntegrityError,
    InvalidPathError,
    ObjectNotFoundError,
)
from cairn.objects import chunking, download_stage
from cairn.objects.hashcache import CachedDigest, HashCache, StatKey, stat_key
from cairn.objects.store import ObjectStore

ProgressFn = Callable[[int, int], None]
_GROUP = 32  # files placed per task
# groups of files this small on average are created by one thread per folder (see `_start`)
_TINY_AVERAGE = 16 << 10
_IN_MEMORY = 1 << 20  # a file up to this size is read whole from the store, then written
TMP_SUFFIX = ".cairn-tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNNAMED_FLAGS = (
    os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC if hasattr(os, "O_TMPFILE") else 0
)  # a file with no name yet (Linux): see Materializer._open_unnamed
_NEW_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN_FOLDERS = 256  # folder descriptors one opener keeps open at most
# files planned and written at a time: what a download holds does not grow with the version
BATCH = 4096
_FOLDERS_KEPT = 4096  # folder states kept between batches (beyond the current one's ancestors)
_CONFLICTS_KEPT = 1000  # conflicts an error keeps (all are counted; its message lists 20)

# what stands in the way, by kind; with overwrite=True all but "folder" are replaced
MODIFIED = "modified"  # a file whose content differs from the version and from any download
SYMLINK = "symlink"  # a symlink where the version has a file or a folder
FOLDER = "folder"  # a folder with content where the version has a file
FILE = "file"  # a modified file (or other non-folder) where the version has a folder
_NEVER_REPLACED = (FOLDER,)


@dataclass(frozen=True)
class Wanted:
    path: str  # inside the artifact
    digest: str
    size: int
    chunks: str | None


# the files of a download: a list, or a function that walks them afresh each time
Files = Iterable[Wanted] | Callable[[], Iterable[Wanted]]


@dataclass
class _Plan:
    """What one batch of a download has to do, and what stands in its way."""

    todo: list[Wanted] = field(default_factory=list)
    in_place: list[Wanted] = field(default_factory=list)
    replace: set[str] = field(default_factory=set)  # paths (files or folders) to remove first
    new: set[str] = field(default_factory=set)  # files absent when planned
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, kind)
    hashed: list[tuple[StatKey, CachedDigest]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)  # seen first in this batch, top down
    file_in_the_way: dict[str, os.stat_result] = field(default_factory=dict)  # of a folder


@dataclass
class _Conflicts:
    """The conflicts of a whole download: the first few kept to list, all of them counted."""

    kept: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0
    never_replaced: bool = False

    def add(self, conflicts: list[tuple[str, str]]) -> None:
        self.count += len(conflicts)
        room = _CONFLICTS_KEPT - len(self.kept)
        if room > 0:
            self.kept.extend(conflicts[:room])
        self.never_replaced |= any(kind in _NEVER_REPLACED for _p, kind in conflicts)


def _source(files: Files) -> Callable[[], Iterable[Wanted]]:
    """``files`` as something that can be walked twice (a check, then the writes)."""
    if callable(files):
        return files
    if iter(files) is files:  # a one-shot iterator: it has to be kept to be walked twice
        files = list(files)
    kept = files
    return lambda: kept


def _batches(files: Iterable[Wanted], size: int) -> Iterator[list[Wanted]]:
    it = iter(files)
    while batch := list(itertools.islice(it, size)):
        yield batch


def tmp_name(name: str) -> str:
    """A temp name beside ``name`` (short enough for NAME_MAX whatever ``name`` is)."""
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        name = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f".{name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"


def open_tmp(dir_fd: int | None, name: str) -> tuple[int, str]:
    """Create and lock a temp file beside ``name`` (relative to ``dir_fd``, or a path): (fd,
    temp name). The lock tells `remove_stale_tmp` of other processes that its writer lives."""
    folder, base = os.path.split(name)
    while True:
        tmp = os.path.join(folder, tmp_name(base))
        fd = os.open(
            tmp,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=dir_fd,
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # a cleaner may have removed it between the create and the lock: make another
            if os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_tmp(folder: str | Path) -> int:
    """Remove the temp files of downloads that died in ``folder`` (those no live writer holds
    locked). Returns how many were removed."""
    removed = 0
    try:
        with os.scandir(folder) as found:  # only temp names are kept: a huge folder is not held
            temps = [e.path for e in found if e.name.endswith(TMP_SUFFIX) and e.name[0] == "."]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for path in temps:
        fd = open_locked(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if fd is None:
            continue  # being written right now (or gone)
        try:
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


def _is_normal(path: str) -> bool:
    """``check_path(path) == path``, without building the parts (called once per file)."""
    if not path or path[0] == "/" or path[-1] == "/" or "//" in path:
        return False
    if "\x00" in path or "\\" in path:
        return False
    if "." in path:
        padded = f"/{path}/"
        return "/./" not in padded and "/../" not in padded
    return True


def _make_dest(dest: Path) -> bool:
    """Make ``dest`` (and its parents); True when it was absent or empty: nothing can be in the
    way of the download, which then needs no check before writing."""
    try:
        dest.mkdir(parents=True)
        return True
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno in _FULL:
            raise _disk_full(exc, dest, None) from None
        raise
    if not dest.is_dir():
        raise DownloadConflictError(
            f"{dest} is a file, not a folder: download somewhere else", conflicts=[("", FILE)]
        )
    with os.scandir(dest) as entries:
        return next(entries, None) is None


_DIR = "dir"  # a folder on disk, made by the user or an earlier download
_MISSING = "missing"  # absent, or below a folder that is absent or in the way
_BLOCKED = "blocked"  # a symlink or a file where the version has a folder
_MADE = "made"  # made by this download (nothing below it yet)


class _Folders:
    """What stands where the version needs folders, looked at one level at a time (reads only;
    the dead temp files in each folder found are removed). Kept for a bounded number of folders:
    a version comes in path order, so once the files of a folder are passed only its ancestors
    come up again; a folder forgotten anyway is only looked at again."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.state: dict[str, str] = {"": _DIR}
        remove_stale_tmp(root)

    def of(self, folder: str, plan: _Plan) -> str:
        """The state of ``folder``; the folders first seen are added to ``plan.folders`` (top
        down), what is in their way to its conflicts or ``file_in_the_way``."""
        state = self.state.get(folder)
        if state is not None:
            return state
        below: list[str] = []  # no recursion: a folder thousands of levels deep is like any
        at = folder
        while at not in self.state:
            below.append(at)
            at = os.path.dirname(at)
        for path in reversed(below):
            self.state[path] = self._look(path, self.state[os.path.dirname(path)], plan)
            plan.folders.append(path)
        return self.state[folder]

    def _look(self, folder: str, parent: str, plan: _Plan) -> str:
        if parent != _DIR:
            return _MISSING  # below a folder to be made (or refused)
        try:
            st = os.lstat(self.root + folder)
        except FileNotFoundError:
            return _MISSING
        if stat.S_ISDIR(st.st_mode):
            remove_stale_tmp(self.root + folder)
            return _DIR
        if stat.S_ISLNK(st.st_mode):
            plan.conflicts.append((folder, SYMLINK))
        else:
            plan.file_in_the_way[folder] = st
        return _BLOCKED

    def trim(self, at: str) -> None:
        """Forget every folder but ``at`` and its ancestors, once many are known."""
        if len(self.state) <= _FOLDERS_KEPT:
            return
        kept = {"": _DIR}
        while at:
            if at in self.state:
                kept[at] = self.state[at]
            at = os.path.dirname(at)
        self.state = kept


def prepare(
    dest: Path,
    wanted: Files,
    hash_cache: HashCache | None,
    *,
    overwrite: bool,
    threads: int = 2,
    folders_only: Sequence[str] = (),
) -> None:
    """Check a download into ``dest`` before anything is written: raise `DownloadConflictError`
    listing what is in the way, else make the folders (never through a symlink). ``wanted``:
    the files (a list, or a function that walks them afresh: it is walked twice, a batch at a
    time); ``folders_only``: more paths whose parent folders are needed (their own place is not
    checked). The files themselves are the caller's to write."""
    source = _source(wanted)
    _make_dest(dest)
    extra = [os.path.dirname(check_path(p)) for p in folders_only]
    _check(source, dest, hash_cache, overwrite=overwrite, threads=threads, extra_folders=extra)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        folders = _Folders(str(dest) + "/")
        with _FolderOpener(root_fd) as opener:
            for batch in _batches(source(), BATCH):
                plan = _plan(batch, folders, hash_cache, threads, trim=True)
                _make_folders(opener, folders, plan, overwrite)
            _make_folders(opener, folders, _plan_folders(folders, extra, hash_cache), overwrite)
    except OSError as exc:
        if exc.errno in _FULL:
            raise _disk_full(exc, dest, None) from None
        raise
    finally:
        os.close(root_fd)


@dataclass
class _Checked:
    """What the check of a download found to do."""

    todo: int = 0  # files to write
    in_place: int = 0  # files already right
    in_place_bytes: int = 0


def _check(
    source: Callable[[], Iterable[Wanted]],
    dest: Path,
    hash_cache: HashCache | None,
    *,
    overwrite: bool,
    threads: int,
    extra_folders: Sequence[str] = (),
) -> _Checked:
    """The first pass of a download into a folder that has content: walk the version a batch at
    a time (reads only) and raise `DownloadConflictError` if anything is in the way, before
    anything is written. Only the first conflicts are kept to list; all are counted."""
    folders = _Folders(str(dest) + "/")
    found = _Conflicts()
    checked = _Checked()
    replace = False

    def tally(plan: _Plan) -> None:
        nonlocal replace
        found.add([c for c in plan.conflicts if not overwrite or c[1] in _NEVER_REPLACED])
        replace |= bool(plan.conflicts or plan.replace)
        if plan.hashed and hash_cache:  # a truth about the user's files, kept either way
            hash_cache.put_many(plan.hashed)
        checked.todo += len(plan.todo)
        checked.in_place += len(plan.in_place)
        checked.in_place_bytes += sum(w.size for w in plan.in_place)

    for batch in _batches(source(), BATCH):
        tally(_plan(batch, folders, hash_cache, threads, trim=True))
    tally(_plan_folders(folders, extra_folders, hash_cache))
    if found.count:
        raise _conflict_error(dest, found, overwrite)
    if replace:
        checked.todo = max(checked.todo, 1)  # something is in the way of a folder: a write
    return checked


def _plan_folders(folders: _Folders, paths: Sequence[str], hash_cache: HashCache | None) -> _Plan:
    """The plan of folders needed beside the files (`prepare`'s ``folders_only``)."""
    plan = _Plan()
    for folder in paths:
        if folder:
            folders.of(folder, plan)
    _resolve_files_in_the_way(plan, {}, hash_cache)
    return plan


def _make_folders(opener: _FolderOpener, folders: _Folders, plan: _Plan, overwrite: bool) -> None:
    """Make the folders of ``plan`` that are not on disk (after its check)."""
    replace = plan.replace | {p for p, _kind in plan.conflicts} if overwrite else plan.replace
    for folder in plan.folders:
        if folders.state.get(folder, _DIR) != _DIR:
            opener.make(folder, replace=folder in replace)
            folders.state[folder] = _MADE


def _plan(
    wanted: list[Wanted],
    folders: _Folders,
    hash_cache: HashCache | None,
    threads: int,
    *,
    trim: bool = False,
) -> _Plan:
    """What one batch of a download has to do, and what stands in the way (reads only)."""
    plan = _Plan()
    root = folders.root
    if trim and wanted:
        folders.trim(os.path.dirname(wanted[0].path))
    regular: dict[str, os.stat_result] = {}
    for w in wanted:
        # paths come from tree objects, which anyone able to write objects can craft: never
        # let one name a place outside ``dest`` ('../x', '/etc/x')
        if not _is_normal(w.path):
            raise InvalidPathError(f"artifact path {w.path!r} is not in normal form ('a/b')")
        if folders.of(w.path.rpartition("/")[0], plan) != _DIR:
            plan.todo.append(w)
            plan.new.add(w.path)
            continue
        try:
            st = os.lstat(root + w.path)
        except FileNotFoundError:
            plan.todo.append(w)
            plan.new.add(w.path)
            continue
        if stat.S_ISREG(st.st_mode):
            regular[w.path] = st
            continue
        plan.todo.append(w)
        if stat.S_ISLNK(st.st_mode):
            plan.conflicts.append((w.path, SYMLINK))
        elif stat.S_ISDIR(st.st_mode):
            with os.scandir(root + w.path) as entries:
                empty = next(entries, None) is None
            if not empty:
                plan.conflicts.append((w.path, FOLDER))
            else:
                plan.conflicts.append((w.path, "empty folder"))
        else:
            plan.conflicts.append((w.path, "special file"))
    if not regular and not plan.file_in_the_way:
        return plan
    keys = {p: stat_key(st) for p, st in regular.items()}
    cached = _resolve_files_in_the_way(plan, keys, hash_cache)
    to_hash: list[Wanted] = []
    for w in wanted:
        st_or_none = regular.get(w.path)
        if st_or_none is None:
            continue
        hit = cached.get(keys[w.path])
        if hit is not None and hit.digest == w.digest:
            plan.in_place.append(w)
        elif hit is not None:
            plan.todo.append(w)  # an earlier download (or a logged file), unchanged since
        elif st_or_none.st_size != w.size:
            plan.todo.append(w)
            plan.conflicts.append((w.path, MODIFIED))
        else:
            to_hash.append(w)
    if to_hash:  # unknown files of the right size: the same content is fine where it is

        def digest_of(w: Wanted) -> str | None:
            try:
                return _hash_path(root + w.path)
            except OSError:
                return None

        with ThreadPoolExecutor(threads) as pool:
            digests = list(pool.map(digest_of, to_hash))
        for w, digest in zip(to_hash, digests, strict=True):
            if digest == w.digest:
                plan.in_place.append(w)
                plan.hashed.append((keys[w.path], CachedDigest(w.digest, w.chunks)))
            else:
                plan.todo.append(w)
                plan.conflicts.append((w.path, MODIFIED))
    if plan.new and len(plan.new) < len(plan.todo):  # written in the order they come
        todo = {id(w) for w in plan.todo}
        plan.todo = [w for w in wanted if id(w) in todo]
    return plan


def _resolve_files_in_the_way(
    plan: _Plan, keys: dict[str, StatKey], hash_cache: HashCache | None
) -> dict[StatKey, CachedDigest]:
    """Look ``keys`` (and the files in the way of folders) up in the hash cache; a file in the
    way of a folder is replaced when Cairn knows it, else it is a clash."""
    blocking = {p: stat_key(st) for p, st in plan.file_in_the_way.items()}
    every = [*keys.values(), *blocking.values()]
    cached = hash_cache.get_many(every) if hash_cache and every else {}
    for folder, key in blocking.items():
        if key in cached:
            plan.replace.add(folder)
        else:
            plan.conflicts.append((folder, FILE))
    return cached


@dataclass
class _Running:
    """A batch being written."""

    plan: _Plan
    futures: list[Future[None]]
    stack: contextlib.ExitStack


class Materializer:
    """Writes a version's files into a folder, a batch of files at a time: the memory it needs
    does not grow with the number of files (`BATCH`)."""

    def __init__(
        self,
        object_store: ObjectStore,
        hash_cache: HashCache | None,
        *,
        threads: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.object_store = object_store
        self.hash_cache = hash_cache
        # threads placing files, except groups of tiny files, which one thread creates (`_start`)
        self.threads = threads or (os.cpu_count() or 2)
        self.progress = progress or (lambda files, nbytes: None)
        self._placed: list[tuple[StatKey, CachedDigest]] = []
        self._unnamed = _UNNAMED_FLAGS != 0 and os.path.isdir("/proc/self/fd")
        self._by_name = False  # new files are created by name (a staged download's)

    def materialize(
        self,
        wanted: Files,
        dest: Path,
        *,
        overwrite: bool = False,
        stage: str | None = None,
        then: Callable[[Path], None] | None = None,
    ) -> None:
        """Write ``wanted`` into ``dest``. Refuses (`DownloadConflictError`, nothing written)
        when a modified file, a symlink or a clash is in the way, unless ``overwrite``.

        ``wanted``: the files, as a list or as a function that walks them afresh each time it
        is called (a version's tree walk): into a folder with content the files are walked
        twice, once to check everything before writing anything and once to write, a batch at
        a time, so that a version of millions of files is never held whole.

        ``stage``: a name for what is downloaded (the same for the same files, different
        otherwise). With it, a ``dest`` that does not exist yet is written whole beside itself
        and then renamed into place (`_write_staged`). ``then`` is called with the folder the
        files are in once they all are (before that rename), to add what is not in the store
        (references)."""
        source = _source(wanted)
        if stage is not None:
            if not os.path.lexists(dest) and download_stage.can_stage(dest):
                if self._write_staged(source, dest, stage, then):
                    return
            else:  # a stopped download's hidden folder beside it is of no use any more
                download_stage.remove_stopped(dest)
        self._write_in_place(source, dest, overwrite)
        if then is not None:
            then(dest)

    def _write_in_place(
        self, source: Callable[[], Iterable[Wanted]], dest: Path, overwrite: bool
    ) -> None:
        fresh = _make_dest(dest)
        if not fresh:  # something may be in the way: check everything first
            checked = _check(
                source, dest, self.hash_cache, overwrite=overwrite, threads=self.threads
            )
            if not checked.todo:  # every file in place: the second pass has nothing to do
                self.progress(checked.in_place, checked.in_place_bytes)
                return
        done = [0]  # bytes of the batches done
        try:
            self._write(source, dest, overwrite, done)
        except OSError as exc:
            if exc.errno in _FULL:
                raise _disk_full(exc, dest, _left(source, done[0])) from None
            raise

    def _write_staged(
        self,
        source: Callable[[], Iterable[Wanted]],
        dest: Path,
        key: str,
        then: Callable[[Path], None] | None,
    ) -> bool:
        """Download into ``dest``, which does not exist, through a hidden folder beside it
        (`download_stage`) renamed to ``dest`` once every file is in and verified: the folder
        appears whole or not at all, and as nobody looks inside the hidden one, its files are
        created by name (an unnamed file linked into place costs 1.5-2x as much on ext4). A
        download stopped half-way (Ctrl-C, a full disk, ``kill -9``) leaves that folder: the
        next download of the same files into the same place resumes from it, its files checked
        like any already in place (a half-written one is replaced); a download of other files
        there removes it. False when ``dest`` appeared before anything was written (another
        download of the same files just made it): the caller writes in place."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            stage = download_stage.stage_of(dest, key)
            download_stage.remove_stopped(dest, keep=stage)
            lock = download_stage.lock(stage, dest)
        except OSError as exc:
            if exc.errno in _FULL:
                raise _disk_full(exc, dest, None) from None
            raise
        if lock is None:
            return False
        try:
            done = [0]
            self._by_name = True
            try:
                # overwrite: what is in the hidden folder is only ever an earlier try's
                self._write(source, stage, True, done)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise _disk_full(exc, dest, _left(source, done[0]), kept=stage) from None
                raise
            finally:
                self._by_name = False
            if then is not None:
                then(stage)
            try:
                rename_noreplace(stage, dest)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise _disk_full(exc, dest, None, kept=stage) from None
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                raise DownloadConflictError(
                    f"{dest} appeared while it was downloaded and was left alone; the "
                    f"download is complete in {stage}: move {dest} away and download again "
                    "(it takes the files from there)",
                    conflicts=[("", FOLDER if dest.is_dir() else FILE)],
                ) from None
        finally:
            os.close(lock)
        return True

    # --- writing -------------------------------------------------------------------------------
    def _write(
        self,
        source: Callable[[], Iterable[Wanted]],
        dest: Path,
        overwrite: bool,
        done: list[int],
    ) -> None:
        folders = _Folders(str(dest) + "/")
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        lanes = [ThreadPoolExecutor(1) for _ in range(self.threads)]
        large = ThreadPoolExecutor(self.threads)
        running: _Running | None = None  # the batch being written
        try:
            with _FolderOpener(root_fd) as opener:
                # the next batch is walked, planned and its folders made while the one before
                # is written; one batch is written at a time
                for batch in _batches(source(), BATCH):
                    plan = _plan(batch, folders, self.hash_cache, self.threads, trim=True)
                    # checked before; what is in the way now came during the download
                    blocking = [
                        c for c in plan.conflicts if not overwrite or c[1] in _NEVER_REPLACED
                    ]
                    if blocking:
                        found = _Conflicts()
                        found.add(blocking)
                        raise _conflict_error(dest, found, overwrite, during=True)
                    if plan.hashed and self.hash_cache:
                        self.hash_cache.put_many(plan.hashed)
                    if overwrite:
                        plan.replace |= {p for p, _kind in plan.conflicts}
                    _make_folders(opener, folders, plan, overwrite)
                    if plan.in_place:
                        in_place = sum(w.size for w in plan.in_place)
                        self.progress(len(plan.in_place), in_place)
                        done[0] += in_place
                    if running is not None:
                        self._finish(running, done)
                        running = None
                    if plan.todo:
                        running = self._start(plan, root_fd, lanes, large)
                if running is not None:
                    self._finish(running, done)
                    running = None
        finally:
            if running is not None:  # stopped by an error: let the writes in flight end
                self._stop(running)
            for pool in [*lanes, large]:
                pool.shutdown(wait=True, cancel_futures=True)
            os.close(root_fd)

    def _fetching(self, todo: list[Wanted]) -> contextlib.AbstractContextManager[object]:
        """Held while a batch is written (a backend that fetches objects says what it needs)."""
        return contextlib.nullcontext()

    def _start(
        self,
        plan: _Plan,
        root_fd: int,
        lanes: list[ThreadPoolExecutor],
        large: ThreadPoolExecutor,
    ) -> _Running:
        """Start writing a batch's files, ``_GROUP`` files per task. Tiny files (creating them
        is most of the work, and it is the kernel's) go to one lane (thread) per folder, the
        lanes balanced by file count: two threads creating files in one folder wait on that
        folder's lock (a download of 200,000 files of ~540 bytes took 8.4 s on one thread,
        16-17 s on two sharing folders). Larger files go to a pool of a few threads (20,000
        files of 4-64 KiB: 2.5-2.9 s on two, 3.2-4.1 s on one)."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self._fetching(plan.todo))
            warm = getattr(self.object_store, "warm", None)
            if warm is not None:  # look the batch's objects up in one pass, not one per file
                warm([w.chunks or w.digest for w in plan.todo])
            by_folder: dict[str, list[Wanted]] = {}
            for w in plan.todo:
                by_folder.setdefault(w.path.rpartition("/")[0], []).append(w)
            # a few dozen files per task: a Future per file costs more Python time than placing
            # a small file does, and that time holds the GIL
            groups = [
                (folder, files[i : i + _GROUP])
                for folder, files in by_folder.items()
                for i in range(0, len(files), _GROUP)
            ]

            def place_group(item: tuple[str, list[Wanted]]) -> None:
                folder, group = item
                with _FolderOpener(root_fd) as opener:
                    dir_fd = opener.open(folder)
                    for w in group:
                        self._place(w, dir_fd, w.path in plan.new, w.path in plan.replace)

            load = [0] * len(lanes)
            lane_of: dict[str, int] = {}
            futures = []
            for group in groups:
                folder, files = group
                if sum(w.size for w in files) >= _TINY_AVERAGE * len(files):
                    futures.append(large.submit(place_group, group))
                    continue
                lane = lane_of.get(folder)
                if lane is None:
                    lane = lane_of[folder] = load.index(min(load))
                load[lane] += len(files)
                futures.append(lanes[lane].submit(place_group, group))
        except BaseException:
            stack.close()
            raise
        return _Running(plan, futures, stack)

    def _finish(self, running: _Running, done: list[int]) -> None:
        """Wait for a batch's files; at the first failure, stop the rest and raise it."""
        try:
            for future in running.futures:
                future.result()
        except BaseException:
            for future in running.futures:
                future.cancel()
            wait(running.futures)
            raise
        finally:
            self._record()
            running.stack.close()
        done[0] += sum(w.size for w in running.plan.todo)

    def _stop(self, running: _Running) -> None:
        for future in running.futures:
            future.cancel()
        wait(running.futures)
        self._record()
        with contextlib.suppress(Exception):  # an error is on its way already
            running.stack.close()

    def _record(self) -> None:
        """Remember the files placed (one batch's) in the hash cache."""
        if self.hash_cache and self._placed:
            self.hash_cache.put_many(self._placed, racy_ok=True)
        self._placed = []

    def _open_unnamed(self, dir_fd: int) -> int | None:
        """An unnamed file in the folder (``O_TMPFILE``), for a file whose name is free: it
        gets its name only once complete and verified (`_link_in_place`), and vanishes with
        the process if that never happens. None where the filesystem cannot."""
        if not self._unnamed:
            return None
        try:
            return os.open(".", _UNNAMED_FLAGS, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _FULL:
                raise
            self._unnamed = False  # EOPNOTSUPP, EISDIR (an old kernel) ...: temp names
            return None

    def _place(self, w: Wanted, dir_fd: int, new: bool, replace: bool) -> None:
        name = os.path.basename(w.path)
        tmp: str | None = None
        named = new and self._by_name
        unnamed = self._open_unnamed(dir_fd) if new and not named else None
        if named:
            fd = os.open(name, _NEW_FLAGS, 0o644, dir_fd=dir_fd)
        elif unnamed is not None:
            fd = unnamed
        else:
            fd, tmp = open_tmp(dir_fd, name)
        try:
            chunk_digests: list[str] = []
            found: str | None = None  # the digest of what was written
            if w.chunks is None and w.size <= _IN_MEMORY:
                # hashed as read, not read back: the bytes written are these bytes
                data = self.object_store.get(w.digest, verify=False)
                written = pwrite_all(fd, data, 0)
                found = hash_bytes(data)
            elif w.chunks is None:
                written = self.object_store.read_into(w.digest, fd, 0)
            else:
                written = 0
                chunk_digests = [
                    d for d, _n in chunking.decode_chunk_list(self.object_store.get(w.chunks))
                ]
                for chunk in chunk_digests:
                    n = self.object_store.read_into(chunk, fd, written)
                    written += n
                    self.progress(0, n)  # a large file's bar moves as its chunks land
            if found is None:
                found = _hash_fd(fd, w.size)
            if written != w.size or found != w.digest:
                # read them again, verified: the store forgets damaged objects, so that a
                # re-log of the file stores them again (and says which one it was)
                for part in [w.digest] if w.chunks is None else [w.chunks, *chunk_digests]:
                    with contextlib.suppress(IntegrityError, ObjectNotFoundError):
                        self.object_store.get(part)
                raise IntegrityError(
                    f"stored content of {w.path} is corrupt (expected {w.digest}, found "
                    f"{found}); log the data again to repair the store",
                    path=w.path,
                    digest=w.digest,
                )
            if named:
                st = os.fstat(fd)
            elif tmp is None:
                _link_in_place(fd, name, dir_fd, w.path)
                st = os.fstat(fd)  # after the link, which moved its ctime
            else:
                _put_in_place(tmp, name, dir_fd, w.path, new, replace)
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                if tmp is not None:
                    os.unlink(tmp, dir_fd=dir_fd)
                elif named:
                    os.unlink(name, dir_fd=dir_fd)  # made by this download (O_EXCL)
            raise
        finally:
            os.close(fd)
        self._placed.append((stat_key(st), CachedDigest(w.digest, w.chunks)))
        self.progress(1, w.size if w.chunks is None else 0)


def _link_in_place(fd: int, name: str, dir_fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` its name, which must still be free: a path the user made
    meanwhile is not replaced (the link fails instead, atomically)."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except FileExistsError:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        kind = MODIFIED if stat.S_ISREG(st.st_mode) else SYMLINK
        kind = FOLDER if stat.S_ISDIR(st.st_mode) else kind
        raise DownloadConflictError(
            f"{path} appeared while it was downloaded: move it away and download again",
            conflicts=[(path, kind)],
        ) from None


def _put_in_place(tmp: str, name: str, dir_fd: int, path: str, new: bool, replace: bool) -> None:
    """Rename ``tmp`` to ``name``; what is there must be what the plan saw (nothing, or
    something it may replace): a path the user made meanwhile is not replaced."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and not replace and (new or not stat.S_ISREG(st.st_mode)):
        kind = MODIFIED if stat.S_ISREG(st.st_mode) else SYMLINK
        kind = FOLDER if stat.S_ISDIR(st.st_mode) else kind
        raise DownloadConflictError(
            f"{path} appeared while it was downloaded: move it away and download again",
            conflicts=[(path, kind)],
        )
    if st is not None and stat.S_ISDIR(st.st_mode):
        os.rmdir(name, dir_fd=dir_fd)  # an empty folder in the way (overwrite=True)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


class _FolderOpener:
    """Opens folders below a root descriptor one level at a time, never following a symlink."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fds: dict[str, int] = {"": root_fd}

    def __enter__(self) -> _FolderOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        for path, fd in self.fds.items():
            if path:
                os.close(fd)
        self.fds = {"": self.root_fd}

    def open(self, folder: str) -> int:
        fd = self.fds.get(folder)
        if fd is not None:
            return fd
        # from the nearest folder already open, one level at a time (no recursion: a folder
        # nested thousands of levels deep opens like any other)
        below: list[str] = []
        at = folder
        while at not in self.fds:
            below.append(at)
            at = os.path.dirname(at)
        parent = self.fds[at]
        for path in reversed(below):
            if len(self.fds) >= _MAX_OPEN_FOLDERS:  # keep descriptors bounded: start over
                self._forget(keep=parent)
            parent = self._open_one(parent, path)
        return parent

    def _open_one(self, parent: int, folder: str) -> int:
        try:
            fd = os.open(os.path.basename(folder), _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise DownloadConflictError(
                    f"{folder} is not a folder any more (a symlink or a file was put there "
                    "during the download): move it away and download again",
                    conflicts=[(folder, SYMLINK)],
                ) from None
            raise
        self.fds[folder] = fd
        return fd

    def _forget(self, keep: int) -> None:
        """Close the folders kept open, except the root and ``keep`` (in use)."""
        kept = {"": self.root_fd}
        for path, fd in self.fds.items():
            if fd == keep:
                kept[path] = fd
            elif path:
                os.close(fd)
        self.fds = kept

    def make(self, folder: str, *, replace: bool) -> None:
        parent = self.open(os.path.dirname(folder))
        name = os.path.basename(folder)
        if replace:  # a symlink or a file Cairn may replace is in the way: the link, not its target
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
        self.open(folder)


def make_folders(dest: Path, folder: str) -> None:
    """Make ``dest/folder`` and the folders between, never through a symlink: a symlink or a
    file in the way raises `DownloadConflictError`."""
    dest.mkdir(parents=True, exist_ok=True)
    if not folder or folder == ".":
        return
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with _FolderOpener(root_fd) as opener:
            for f in _ancestors(check_path(folder)):
                opener.make(f, replace=False)
    finally:
        os.close(root_fd)


def record(hash_cache: HashCache | None, paths: list[Path]) -> None:
    """Remember the digests of files Cairn just wrote (reference downloads), so a later download
    knows them as its own and not as the user's."""
    if hash_cache is None or not paths:
        return
    items = []
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                items.append((stat_key(st), CachedDigest(_hash_path(str(path)), None)))
    hash_cache.put_many(items, racy_ok=True)


def _ancestors(folder: str) -> Iterator[str]:
    parts = folder.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


_WHAT = {
    MODIFIED: "modified (differs from the version and from what Cairn last wrote there)",
    SYMLINK: "a symlink (Cairn does not write through links)",
    FOLDER: "a folder with content where the version has a file",
    FILE: "a file where the version has a folder",
    "empty folder": "an empty folder where the version has a file",
    "special file": "not a regular file (a FIFO, socket or device)",
}


def _conflict_error(
    dest: Path, found: _Conflicts, overwrite: bool, *, during: bool = False
) -> DownloadConflictError:
    conflicts = found.kept
    lines = [f"{path or '.'}: {_WHAT.get(kind, kind)}" for path, kind in conflicts[:20]]
    n = found.count
    more = f"\n  ... and {n - len(lines)} more" if n > len(lines) else ""
    if overwrite:
        advice = "move these folders away yourself (Cairn never removes a folder with content)"
    elif found.never_replaced:
        advice = (
            "pass overwrite=True (`--force`) to replace files and links, move folders away "
            "yourself, or download somewhere else"
        )
    else:
        advice = "pass overwrite=True (`--force`) to replace them, or download somewhere else"
        if not during:
            advice += "; nothing was written"
    if during:
        advice = "they appeared during the download; " + advice
    return DownloadConflictError(
        f"{n:,} path{'s' if n != 1 else ''} in {dest} would be lost by the download:\n  "
        + "\n  ".join(lines)
        + more
        + f"\n{advice}",
        conflicts=conflicts,
    )


def _left(source: Callable[[], Iterable[Wanted]], done: int) -> int | None:
    """The bytes of the files still to write, once a download stopped (a walk of them)."""
    try:
        return max(0, sum(w.size for w in source()) - done)
    except Exception:  # only for the message
        return None


def _disk_full(
    exc: OSError, dest: Path, need: int | None, kept: Path | None = None
) -> DiskFullError:
    try:
        free = shutil.disk_usage(dest if kept is None else kept).free
        where = f"{free:,} bytes free"
    except OSError:
        where = "free space unknown"
    if need is not None:
        where += f", the files still to write total {need:,} bytes"
    left = (
        "nothing partial was left"
        if kept is None
        else f"{dest} was not made; the files written so far wait in {kept} for the next try"
    )
    return DiskFullError(
        f"disk full while downloading into {dest} ({os.strerror(exc.errno or errno.ENOSPC)}; "
        f"{where}); {left}: "
        "free space on that filesystem or download somewhere else, then download again",
        path=str(dest),
    )


def _hash_path(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _hash_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _hash_fd(fd: int, size: int) -> str:
    """The digest of the first ``size`` bytes of ``fd`` (the file was created empty and
    exactly ``size`` bytes were written to it; a short read only makes the digest differ)."""
    hasher = new_hasher(threaded=size >= chunking.CHUNK_THRESHOLD)
    offset = 0
    while offset < size:
        block = os.pread(fd, min(size - offset, 16 << 20), offset)
        if not block:
            break
        hasher.update(block)
        offset += len(block)
    return "blake3:" + hasher.hexdigest()
