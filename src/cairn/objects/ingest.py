"""The hot path of logging: hash users' files straight from where they are and store what the
store lacks. No staging copy is made.

Phase 1 (`hash_files`): every file is looked up in the hash cache; the rest are read once,
hashed, and their missing objects stored while the bytes are in memory. Small files are read
whole in groups (one existence check per group); large files stream through FastCDC.
Phase 2 (`store_tree`): after the caller built the tree, write the tree objects the store lacks,
children first, re-storing any cached file whose objects have gone missing.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.core.digest import format_digest, hash_bytes, new_hasher
from cairn.errors import FileChangedError, SourceFileError, StoreError
from cairn.objects import chunking
from cairn.objects.folders import Stated
from cairn.objects.hashcache import (
    RACY_NS,
    CachedDigest,
    CachedFolder,
    HashCache,
    StatKey,
    stat_key,
)
from cairn.objects.spill import Spill
from cairn.objects.store import ObjectStore
from cairn.objects.tree import BuiltTree, FileEntry

GROUP_FILES = 256
GROUP_BYTES = 16 << 20
BLOCK = 16 << 20
STAT_SLICE = 1024  # files one thread stats at a time
SMALL_THREADS = 2  # threads reading a batch of small files
EXPECTED_FOLDERS = 100_000  # whole folders' trees checked at once when a log begins

ProgressFn = Callable[[int, int], None]  # (files done, bytes done) increments
# a file of a version as phase 2 sees it: its entry, the file to read it from again (None for
# one already stored), and whether its objects are unverified
Placed = tuple[FileEntry, "str | Path | None", bool]


@dataclass
class SpilledTree:
    """A version's tree built by `tree.TreeWriter` while its files streamed by: the root and
    totals, and every file record and tree object in spills rather than in memory.

    ``files`` holds tuples (path, digest, size, chunks, ref, source, from_cache); ``trees``
    holds (digest, body) with every object before the objects pointing to it."""

    root: str
    size: int
    file_count: int
    files: Spill
    trees: Spill
    #: the whole folders hashed file by file, to remember once the version is committed:
    #: (folder on disk, its signature, tree, size, file count, newest mtime)
    folders: list[tuple[str, str, str, int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class StagedFile:
    """A file on disk that will appear at ``path`` inside the artifact."""

    path: str
    source: str | Path
    #: (size, mtime in ns) when the file was added to the draft: a file that differs when it
    #: is logged is refused with FileChangedError instead of logging other content
    added: tuple[int, int] | None = None
    #: for a file of a folder added whole: when the folder was added (ns since the epoch); a
    #: file whose status changed after that (written, touched, replaced) is refused the same
    #: way, without a record per file having been kept since (a ctime later than the clock
    #: says now, from a file server whose clock runs ahead, is let through: it cannot be told
    #: from a change, and refusing it would refuse every fresh file on that server)
    since: int | None = None
    #: the file's status when its folder was stated whole (`cairn.objects.folders`), so that
    #: it is not asked again
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)


@dataclass
class IngestStats:
    files: int = 0
    bytes: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    new_objects: int = 0
    new_bytes: int = 0
    #: folders taken whole from an earlier log, none of their files looked up or read
    unchanged_folders: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def _open(path: str | Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SourceFileError(f"file {path} does not exist; check the path", str(path)) from None
    except PermissionError:
        raise SourceFileError(
            f"file {path} is not readable; fix its permissions", str(path)
        ) from None
    except IsADirectoryError:
        raise SourceFileError(f"{path} is a directory; use add_dir()", str(path)) from None
    except OSError as exc:
        raise SourceFileError(f"cannot open {path}: {exc.strerror}", str(path)) from None


def _changed(path: str | Path) -> FileChangedError:
    return FileChangedError(
        f"file {path} changed while Cairn was reading it; nothing was logged. "
        "Once it is no longer being written, add it to the artifact again and log it.",
        str(path),
    )


def _check_as_walked(sf: StagedFile, opened: os.stat_result) -> None:
    """The file as opened is the one whose status the walk (or the batch's stat) saw: one
    written in between is refused, as if it had changed while being read."""
    seen = sf.stat
    if seen is not None and (
        opened.st_size != seen.st_size
        or opened.st_mtime_ns != seen.st_mtime_ns
        or opened.st_ctime_ns != seen.st_ctime_ns
    ):
        raise _changed(sf.source)


def _check_unchanged(fd: int, before: os.stat_result, read: int, path: str | Path) -> None:
    after = os.fstat(fd)
    if (
        read != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
    ):
        raise _changed(path)


def _read_all(path: str | Path) -> tuple[bytes, os.stat_result]:
    fd = _open(path)
    try:
        st = os.fstat(fd)
        parts = []
        remaining = st.st_size
        while True:
            chunk = os.read(fd, max(remaining, 1 << 16) if remaining > 0 else 1 << 16)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
            if remaining == 0 and st.st_size:
                # no read to see the end: a file that grows from here shows a new size or
                # mtime to the fstat below (a file whose size reads as 0, like those of
                # /proc, is read to its end)
                break
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        _check_unchanged(fd, st, len(data), path)
        return data, st
    finally:
        os.close(fd)


def _read_as_walked(sf: StagedFile) -> tuple[bytes, os.stat_result]:
    """A small file the walk has stated: read in one call asking one byte more than the walk
    saw, then checked against that status (a file written since, before or while it is read,
    is refused). Four system calls a file where `_read_all` needs six: at a million files they
    cost more than the bytes."""
    seen = sf.stat
    if seen is None or not seen.st_size:
        data, st = _read_all(sf.source)
        _check_as_walked(sf, st)
        return data, st
    fd = _open(sf.source)
    try:
        data = os.read(fd, seen.st_size + 1)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (
        len(data) != seen.st_size
        or after.st_size != seen.st_size
        or after.st_mtime_ns != seen.st_mtime_ns
        or after.st_ctime_ns != seen.st_ctime_ns
    ):
        raise _changed(sf.source)
    return data, after


def _stat_slice(staged: list[StagedFile]) -> list[os.stat_result]:
    out = []
    for sf in staged:
        if sf.stat is not None:
            out.append(sf.stat)
            continue
        try:
            out.append(os.stat(sf.source))
        except FileNotFoundError:
            raise SourceFileError(
                f"file {sf.source} does not exist; check the path", str(sf.source)
            ) from None
        except OSError as exc:
            raise SourceFileError(f"cannot read {sf.source}: {exc}", str(sf.source)) from None
    return out


def _hash_whole(hasher: Any, data: memoryview, already_hashed: int) -> None:
    """Feed the block's new bytes (those not carried over from the block before) to the
    whole-file hasher."""
    hasher.update(data[already_hashed:])


def _hash_chunks(data: memoryview, cuts: list[tuple[int, int]]) -> list[str]:
    return [hash_bytes(data[off : off + n]) for off, n in cuts]


class Ingestor:
    def __init__(
        self,
        object_store: ObjectStore,
        cache: HashCache | None,
        *,
        threads: int | None = None,
        progress: ProgressFn | None = None,
        store_key: str | None = None,
    ) -> None:
        self.object_store = object_store
        self.cache = cache
        # names the store in the hash cache's record of whole folders; None: no folder is
        # taken whole
        self.store_key = store_key
        self.threads = threads or min(8, (os.cpu_count() or 2) * 2)
        self.progress = progress or (lambda files, nbytes: None)
        self.stats = IngestStats()
        # files whose digest came from the cache: their objects may be missing from the store
        self._unverified: dict[str, StagedFile] = {}
        self._staged: dict[str, StagedFile] = {}  # every file of this log, by artifact path
        self._new_trees: set[str] = set()
        # chunks of the chunked files of this log (checked again right before the commit)
        self._chunk_digests: set[str] = set()
        # the store's drop count before this log asked it anything: unchanged at the commit
        # means nothing this log found in the store has been dropped since
        self._generation: int | None = object_store.generation()
        self._verify_all = False  # set by repair: check every file's objects, not the cached
        self._new_cache: list[tuple[StatKey, CachedDigest]] = []
        self._cache_lock = threading.Lock()
        self._reused = 0  # whole folders taken from an earlier log
        self._present_trees: set[str] = set()  # their trees the store was found to hold

    # --- whole folders (cairn.objects.folders) ---------------------------------------------
    def take_folder(self, stated: Stated, since: int | None) -> CachedFolder | None:
        """The stored tree of a folder no file of which changed since a log stored it, or
        None (then its files are hashed one by one)."""
        if self.cache is None or self.store_key is None or self._generation is None:
            return None
        if since is not None and stated.newest > since:
            now = time.time_ns()
            if any(since < st.st_ctime_ns <= now for st in stated.stats):
                return None  # hashed file by file, which refuses the changed file
        hit = self.cache.get_folder(self.store_key, stated.listed.root)
        if hit is None or hit.sig != stated.sig or hit.generation != self._generation:
            return None
        # still in the store (not a store made again at the same place)?
        if hit.tree not in self._present_trees and self.object_store.missing([hit.tree]):
            return None
        self._reused += 1
        self.stats.add(files=hit.count, bytes=hit.size, unchanged_folders=1)
        self.progress(hit.count, hit.size)
        return hit

    def expect_folders(self, roots: Iterable[str]) -> None:
        """Before folders below ``roots`` are offered to `take_folder`: ask the store once
        which of the trees recorded for them it still holds, rather than once a folder
        (through a server, a request each: 1,000 folders were 40% of a re-log). At most
        `EXPECTED_FOLDERS` are asked; any others are asked one at a time."""
        if self.cache is None or self.store_key is None or self._generation is None:
            return
        trees: list[str] = []
        for root in roots:
            trees += self.cache.folder_trees(self.store_key, root, EXPECTED_FOLDERS - len(trees))
        if trees:
            self._present_trees = set(trees) - self.object_store.missing(trees)

    def folders_dropped(self) -> bool:
        """Whether this log took whole folders and the store dropped objects since it began:
        the files below those folders are not known to be stored any more, so the log must
        be done again file by file. The tree objects it wrote are forgotten then, so that
        none claims children that may be gone."""
        if not self._reused or self.object_store.generation() == self._generation:
            return False
        self._forget_new_trees()
        return True

    def _forget_new_trees(self) -> None:
        """Forget the tree objects this log wrote. A server does not let a client delete: the
        log that follows checks every file and every tree of the version again and stores
        what is gone, so the trees left there claim nothing missing once it is done."""
        for digest in self._new_trees:
            try:
                self.object_store.delete(digest)
            except StoreError:
                return

    def remember_folders(self, built: BuiltTree | SpilledTree) -> None:
        """After the version is committed: remember the whole folders it stored, unless the
        store dropped objects meanwhile, or a file was modified too recently to tell a later
        write within the same timestamp tick (the hash cache's rule: any later write moves
        the mtime past this one, and ctime in the signature catches an mtime put back)."""
        if not isinstance(built, SpilledTree) or not built.folders:
            return
        if self.cache is None or self.store_key is None or self._generation is None:
            return
        if self.object_store.generation() != self._generation:
            return
        now = time.time_ns()
        self.cache.put_folders(
            self.store_key,
            [
                (root, CachedFolder(sig, tree, size, count, self._generation))
                for root, sig, tree, size, count, newest in built.folders
                if now - newest > RACY_NS
            ],
        )

    # --- phase 1 ---------------------------------------------------------------------------
    def hash_files(self, staged: list[StagedFile]) -> list[FileEntry]:
        """The entries of ``staged``, in order; the ingestor keeps every file in memory for
        phase 2 (`store_tree` of a `BuiltTree`)."""
        self._staged.update((sf.path, sf) for sf in staged)
        entries, cached = self.hash_batch(staged)
        self._unverified.update((fe.path, self._staged[fe.path]) for fe in cached)
        return entries

    def hash_batch(self, staged: list[StagedFile]) -> tuple[list[FileEntry], list[FileEntry]]:
        """Hash one batch of files and store their missing objects; keeps nothing per file.
        Returns the entries of ``staged`` in order, and those whose digest came from the hash
        cache (their objects may have been dropped from the store since)."""
        stats = self._stat_all(staged)
        now = time.time_ns()  # a ctime later than this is a file system clock ahead of ours
        for sf, st in zip(staged, stats, strict=True):
            if sf.added is not None and sf.added != (st.st_size, st.st_mtime_ns):
                raise FileChangedError(
                    f"file {sf.source} changed since it was added to the artifact (size "
                    f"{sf.added[0]} -> {st.st_size} bytes, or its modification time): nothing "
                    "was logged; add it again to log its current content",
                    str(sf.source),
                )
            if sf.since is not None and sf.since < st.st_ctime_ns <= now:
                raise FileChangedError(
                    f"file {sf.source} changed since its folder was added to the artifact "
                    "(written, touched or replaced after add_dir): nothing was logged; add the "
                    "folder again to log its current content",
                    str(sf.source),
                )
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                raise SourceFileError(f"{sf.source} is a folder; use add_dir()", str(sf.source))
            if not stat.S_ISREG(mode):
                # opening a FIFO would wait for a writer; a device may never end
                raise SourceFileError(
                    f"{sf.source} is not a regular file (a socket, FIFO or device); "
                    "log regular files only",
                    str(sf.source),
                )
        keys = [stat_key(st) for st in stats]
        cached = self.cache.get_many(keys) if self.cache else {}

        results: dict[str, FileEntry] = {}
        from_cache: list[FileEntry] = []
        todo_small: list[tuple[StagedFile, int]] = []
        todo_large: list[StagedFile] = []
        hit_files = hit_bytes = 0
        for sf, st, key in zip(staged, stats, keys, strict=True):
            hit = cached.get(key)
            if hit is not None:
                results[sf.path] = FileEntry(sf.path, hit.digest, st.st_size, hit.chunks)
                from_cache.append(results[sf.path])
                hit_files += 1
                hit_bytes += st.st_size
            elif st.st_size >= chunking.CHUNK_THRESHOLD:
                todo_large.append(sf)
            else:
                todo_small.append((sf, st.st_size))
        self.stats.add(files=len(staged), bytes=sum(st.st_size for st in stats))
        if hit_files:
            self.progress(hit_files, hit_bytes)

        groups: list[list[StagedFile]] = []
        group: list[StagedFile] = []
        group_bytes = 0
        for sf, size in todo_small:
            group.append(sf)
            group_bytes += size
            if len(group) >= GROUP_FILES or group_bytes >= GROUP_BYTES:
                groups.append(group)
                group, group_bytes = [], 0
        if group:
            groups.append(group)

        if groups or todo_large:
            # small files from at most SMALL_THREADS threads: each file is a few system calls,
            # each of which gives up and takes back the GIL, and more threads fighting for it
            # made a first log of 200,000 files slower (6.3 s with 2 threads, 7.9 s with 4)
            threads = self.threads if todo_large else min(self.threads, SMALL_THREADS)
            with ThreadPoolExecutor(threads) as pool:
                futures: list[Future[list[FileEntry]]] = [
                    pool.submit(self._store_large, sf) for sf in todo_large
                ]
                futures += [pool.submit(self._store_small_group, g) for g in groups]
                try:
                    for fut in futures:
                        for entry in fut.result():
                            results[entry.path] = entry
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
        return [results[sf.path] for sf in staged], from_cache

    def _stat_all(self, staged: list[StagedFile]) -> list[os.stat_result]:
        """``os.stat`` of every file, in order; a large batch from a few threads (a stat
        releases the GIL, and on a cold cache or a network file system it waits)."""
        if sum(sf.stat is None for sf in staged) < STAT_SLICE * 2:
            return _stat_slice(staged)
        slices = [staged[i : i + STAT_SLICE] for i in range(0, len(staged), STAT_SLICE)]
        with ThreadPoolExecutor(min(4, len(slices))) as pool:
            return [st for part in pool.map(_stat_slice, slices) for st in part]

    def _remember(self, st: os.stat_result, digest: str, chunks: str | None) -> None:
        with self._cache_lock:
            self._new_cache.append((stat_key(st), CachedDigest(digest, chunks)))

    def _store_small_group(self, group: list[StagedFile]) -> list[FileEntry]:
        # the bytes stored are the bytes hashed, never a second read of the file: a file
        # rewritten within one timestamp tick (unchanged mtime) cannot put bytes in the store
        # under a digest they do not have
        loaded: list[tuple[StagedFile, bytes, str, os.stat_result]] = []
        for sf in group:
            data, st = _read_as_walked(sf)
            loaded.append((sf, data, hash_bytes(data), st))
        missing = self.object_store.missing({digest for _, _, digest, _ in loaded})
        entries = []
        new_objects = new_bytes = read = 0
        remembered = []
        to_store = []
        for sf, data, digest, st in loaded:
            if digest in missing:
                missing.discard(digest)
                to_store.append((digest, data))
            remembered.append((stat_key(st), CachedDigest(digest, None)))
            read += len(data)
            entries.append(FileEntry(sf.path, digest, len(data)))
        for (_digest, data), written in zip(
            to_store, self.object_store.put_many(to_store), strict=True
        ):
            if written:
                new_objects += 1
                new_bytes += len(data)
        with self._cache_lock:
            self._new_cache.extend(remembered)
        self.stats.add(
            new_objects=new_objects, new_bytes=new_bytes, hashed_files=len(group), hashed_bytes=read
        )
        self.progress(len(group), read)
        return entries

    def _store_large(self, sf: StagedFile) -> list[FileEntry]:
        fd = _open(sf.source)
        try:
            st = os.fstat(fd)
            _check_as_walked(sf, st)
            digest, chunks_digest, read = self._chunk_stream(fd, sf.source, st)
        finally:
            os.close(fd)
        self._remember(st, digest, chunks_digest)
        self.stats.add(hashed_files=1, hashed_bytes=read)
        return [FileEntry(sf.path, digest, read, chunks_digest)]

    def _chunk_stream(self, fd: int, path: str | Path, st: os.stat_result) -> tuple[str, str, int]:
        """Read a large file once: whole-file BLAKE3 on a helper thread while the file is cut
        into chunks here and the chunks the store lacks are stored. If the file changes
        meanwhile, FileChangedError is raised (the chunks stored are correct, and harmless)."""
        try:
            result = self._chunk_stream_inner(fd, st)
            _check_unchanged(fd, st, result[2], path)
            return result
        except (FileChangedError, EOFError):
            # the chunks stored are the bytes hashed, so they are correct and stay: deleting
            # them could pull an object from under a concurrent logger that found it stored
            raise _changed(path) from None

    def _chunk_stream_inner(self, fd: int, st: os.stat_result) -> tuple[str, str, int]:
        """A three-stage pipeline over 16 MiB blocks: this thread reads block k+1 and finds its
        chunk boundaries while one helper thread feeds block k to the whole-file BLAKE3 and
        another hashes its chunks and stores those the store lacks. Each stage runs mostly
        outside the GIL, so on two cores the stages overlap."""
        hasher = new_hasher(threaded=False)
        cdc = chunking.chunker()
        chunk_list: list[tuple[str, int]] = []
        bufs = [bytearray(BLOCK + chunking.MAX_CHUNK) for _ in range(2)]
        total = 0
        left: memoryview | None = None
        i = 0
        previous: tuple[Future[None], Future[list[tuple[str, int]]]] | None = None
        with ThreadPoolExecutor(1) as whole, ThreadPoolExecutor(1) as chunks:
            while True:
                view = memoryview(bufs[i])
                keep = 0
                if left is not None:
                    keep = len(left)
                    view[:keep] = left
                n = os.readv(fd, [view[keep : keep + BLOCK]])
                while 0 < n < BLOCK:  # short read: keep filling the block
                    more = os.readv(fd, [view[keep + n : keep + BLOCK]])
                    if not more:
                        break
                    n += more
                eof = n < BLOCK
                total += n
                data = view[: keep + n]
                cuts = [(c.offset, c.length) for c in cdc.cut_buf(data)] if len(data) else []
                if not eof and cuts:
                    last_off, last_len = cuts.pop()
                    left = data[last_off : last_off + last_len]
                else:
                    left = None
                jobs = (
                    whole.submit(_hash_whole, hasher, data, keep),
                    chunks.submit(self._hash_and_store, data, cuts),
                )
                if previous is not None:
                    self._finish_block(fd, st, previous, chunk_list)
                previous = jobs
                self.progress(0, n)
                i ^= 1
                if eof:
                    break
            if previous is not None:
                self._finish_block(fd, st, previous, chunk_list)
        self._chunk_digests.update(digest for digest, _n in chunk_list)
        body = chunking.encode_chunk_list(total, chunk_list)
        chunks_digest = hash_bytes(body)
        if self.object_store.missing([chunks_digest]) and self.object_store.put(
            chunks_digest, body
        ):
            self.stats.add(new_objects=1, new_bytes=len(body))
        self.progress(1, 0)
        return format_digest(hasher.hexdigest()), chunks_digest, total

    def _finish_block(
        self,
        fd: int,
        st: os.stat_result,
        jobs: tuple[Future[None], Future[list[tuple[str, int]]]],
        chunk_list: list[tuple[str, int]],
    ) -> None:
        jobs[0].result()
        chunk_list.extend(jobs[1].result())
        if os.fstat(fd).st_mtime_ns != st.st_mtime_ns:
            raise EOFError("file changed while being read")

    def _hash_and_store(
        self, data: memoryview, cuts: list[tuple[int, int]]
    ) -> list[tuple[str, int]]:
        digests = _hash_chunks(data, cuts)
        self._store_chunks(data, cuts, digests)
        return [(digest, n) for digest, (_off, n) in zip(digests, cuts, strict=True)]

    def _store_chunks(
        self,
        data: memoryview,
        cuts: list[tuple[int, int]],
        digests: list[str],
    ) -> None:
        """Store the block's missing chunks from the very bytes that were hashed (not a second
        read of the file, which may have changed since without its mtime showing it)."""
        missing = self.object_store.missing(digests)
        for (off, n), digest in zip(cuts, digests, strict=True):
            if digest in missing:
                missing.discard(digest)
                if self.object_store.put(digest, data[off : off + n]):
                    self.stats.add(new_objects=1, new_bytes=n)

    # --- phase 2 ---------------------------------------------------------------------------
    def _placed(self, built: BuiltTree | SpilledTree) -> Iterator[list[Placed]]:
        """The version's files in batches, each with the file to read it from again (None for
        a file already stored: a reference, or a file of an earlier version) and whether its
        objects are unverified (its digest came from the hash cache, or `repair` asked)."""
        if isinstance(built, SpilledTree):
            for records in built.files.batches():
                yield [
                    (FileEntry(*r[:5]), r[5], r[6] or (self._verify_all and r[5] is not None))
                    for r in records
                ]
            return
        for entries in built.files.values():
            batch: list[Placed] = []
            for fe in entries:
                sf = self._staged.get(fe.path)
                source = sf.source if sf is not None else None
                unverified = fe.path in self._unverified or (self._verify_all and sf is not None)
                batch.append((fe, source, unverified))
            yield batch

    def _trees(self, built: BuiltTree | SpilledTree) -> Iterator[list[tuple[str, bytes]]]:
        """The version's tree objects in batches, every object before the objects pointing
        to it."""
        if isinstance(built, SpilledTree):
            yield from built.trees.batches()
        else:
            yield [(digest, built.objects[digest]) for digest in self._post_order(built)]

    def trees_missing(self, built: BuiltTree | SpilledTree) -> bool:
        """Whether the store lacks any of the version's tree objects."""
        return any(self.object_store.missing({d for d, _ in batch}) for batch in self._trees(built))

    def store_tree(self, built: BuiltTree | SpilledTree) -> None:
        """Write the tree objects the store lacks, children before parents, after making sure
        every file they list is stored.

        Files the hash cache answered were stored by an earlier log, and `cairn gc` may have
        dropped their objects since: a deleted version's blobs go with the packs gc rewrites
        or deletes, while its tree objects can stay indexed in a pack gc keeps whole. So every
        such file is checked (and the chunks of chunked ones), not only those below new
        trees, and anything gone is read and stored again."""
        for batch in self._placed(built):
            cached: dict[str, tuple[FileEntry, str | Path]] = {}
            for fe, source, unverified in batch:
                if fe.ref is None and unverified and source is not None:
                    cached[fe.chunks or fe.digest] = (fe, source)
            if not cached:
                continue
            lost = self.object_store.missing(cached)
            chunks_of: dict[str, list[str]] = {}
            for key, (fe, _source) in cached.items():
                if fe.chunks and key not in lost:
                    body = self.object_store.get(key)
                    chunks_of[key] = [digest for digest, _n in chunking.decode_chunk_list(body)]
            if chunks_of:
                for chunks in chunks_of.values():
                    self._chunk_digests.update(chunks)
                gone = self.object_store.missing({c for cs in chunks_of.values() for c in cs})
                lost.update(key for key, chunks in chunks_of.items() if not gone.isdisjoint(chunks))
            for key in lost:
                self._restore(*cached[key])
        new_trees: set[str] = set()
        for trees in self._trees(built):
            missing = self.object_store.missing({d for d, _ in trees})
            for digest, body in trees:
                if digest in missing and digest not in new_trees:
                    new_trees.add(digest)
                    if self.object_store.put(digest, body):
                        self.stats.add(new_objects=1, new_bytes=len(body))
        self._new_trees = new_trees
        self.flush_cache()

    def lost_since_stored(self, built: BuiltTree | SpilledTree) -> set[str]:
        """Objects the version of the last `store_tree` needs that are no longer in the store.

        Called after the store is synced, right before the version is committed: a `cairn gc`
        running meanwhile may have dropped an old, unreferenced object this log decided to
        reuse (a tree, a file's blob or chunk list, a chunk). Empty in every other case. When
        something is lost, the new tree objects are forgotten too, so that no stored tree
        claims children that are gone and the next log writes them (and the lost objects)
        again."""
        generation = self.object_store.generation()
        if generation is not None and generation == self._generation:
            return set()  # nothing was dropped since store_tree looked
        lost = self.object_store.missing(self._chunk_digests)
        for trees in self._trees(built):
            lost |= self.object_store.missing({d for d, _ in trees})
        for placed in self._placed(built):
            lost |= self.object_store.missing(
                {fe.chunks or fe.digest for fe, _s, _u in placed if fe.ref is None}
            )
        if lost:
            self._forget_new_trees()
        return lost

    def repair(self, built: BuiltTree | SpilledTree) -> None:
        """After `lost_since_stored` found objects gone (a concurrent `cairn gc` dropped what
        this log reused): check every file of the version, not only the cached ones, store
        again whatever is missing from the user's files, and write the trees again. The caller
        syncs and calls `lost_since_stored` once more."""
        self._generation = self.object_store.generation()
        self._verify_all = True
        self.store_tree(built)

    def _post_order(self, built: BuiltTree) -> Iterable[str]:
        order: list[str] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(built.root, False)]
        while stack:
            digest, expanded = stack.pop()
            if expanded:
                order.append(digest)
                continue
            if digest in seen:
                continue
            seen.add(digest)
            stack.append((digest, True))
            for child in built.children.get(digest, ()):
                stack.append((child, False))
        return order

    def _restore(self, entry: FileEntry, source: str | Path) -> None:
        """A cached file whose objects are gone from the store: read and store it again."""
        if entry.chunks:
            fd = _open(source)
            try:
                st = os.fstat(fd)
                digest, chunks_digest, _read = self._chunk_stream(fd, source, st)
            finally:
                os.close(fd)
            if (digest, chunks_digest) != (entry.digest, entry.chunks):
                raise _changed(source)
        else:
            data, _st = _read_all(source)
            if hash_bytes(data) != entry.digest:
                raise _changed(source)
            if self.object_store.put(entry.digest, data):
                self.stats.add(new_objects=1, new_bytes=len(data))

    def flush_cache(self) -> None:
        with self._cache_lock:  # the next batch may be adding to it meanwhile
            new, self._new_cache = self._new_cache, []
        if self.cache and new:
            self.cache.put_many(new)
