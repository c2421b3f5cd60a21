"""The local pack store: objects appended to pack files, found through ``index.db``.

Creating one file per object costs more than the bytes themselves on most file systems (20,000
small files, or the ~4,000 chunks of a 2 GiB checkpoint). So objects are appended to a pack
file of up to PACK_TARGET bytes and an SQLite index (`cairn.objects.packs.index`) maps
``digest -> (pack, offset, length)``.

Write ordering (the invariant of docs/architecture.md holds): a pack is written under
``tmp/``, moved to ``packs/`` and flushed to disk (``syncfs``) before its index rows are
committed, so an object the index lists is always durable and complete. A crash leaves at most
an unindexed pack in ``tmp/`` or ``packs/``, which is garbage.

`LocalUpload` is one server upload request: a pack of its own, flushed on its own (not the
whole file system) and indexed only by ``commit``; ``abort`` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cairn.core.digest import hash_bytes
from cairn.core.fileio import pwrite_all
from cairn.errors import DiskFullError, IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects.packs.format import Entry, Location, Row, encode_footer, read_footer
from cairn.objects.packs.index import PackIndex
from cairn.storage.local import syncfs

PACK_TARGET = 64 << 20
_IOV_MAX = 1024  # buffers one pwritev takes (Linux)
INDEX_EVERY = 50_000  # objects written by one log before they are indexed mid-log
DEFAULT_GRACE_SECONDS = 24 * 3600.0

Write = Callable[[int, int], None]  # (pack fd, offset): write an object's bytes there


class _PackWriter:
    """Appends objects to pack files under ``tmp/`` and seals each full one into ``packs/``.
    Remembers what it wrote until the owner indexes it (``take``) or throws it away
    (``abort``); until then it keeps each sealed pack open, so that gc (which reclaims
    unindexed packs open in no process) leaves it alone. ``background``: a sealed pack is
    flushed to disk on a background thread (the owner syncs the file system before
    indexing); otherwise it is flushed before it moves, and its folder after."""

    def __init__(self, root: Path, *, background: bool) -> None:
        self.root = root
        self.background = background
        self.fd: int | None = None
        self.name = ""
        self.size = 0
        self.pending: dict[str, Location] = {}  # written, not yet indexed
        self.sealed: list[str] = []  # packs complete on disk, rows not yet indexed
        self.entries: list[Entry] = []  # of the open pack, for its footer
        self._held: dict[str, int] = {}  # sealed pack -> a read fd held until indexed
        self._flushing: list[tuple[str, Future[None]]] = []  # (pack, its background flush)
        self._pid = os.getpid()

    def pack_path(self, name: str) -> Path:
        return self.root / "packs" / name[:2] / name

    def append(self, digest: str, length: int, write: Write) -> bool:
        if digest in self.pending:
            return False
        if self.fd is None:
            self._open_pack()
        assert self.fd is not None
        offset = self.size
        write(self.fd, offset)
        self.size += length
        self.pending[digest] = (self.name, offset, length)
        self.entries.append((digest, offset, length))
        if self.size >= PACK_TARGET:
            self.seal()
        return True

    def append_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]:
        """`append` of each object, the objects that land in one pack written with one
        ``pwritev`` (small files: a system call per object cost as much as the bytes)."""
        written = [False] * len(items)
        run: list[bytes | memoryview] = []
        placed: list[Entry] = []
        in_run: set[str] = set()

        def write_run() -> None:
            if placed:
                assert self.fd is not None
                _writev_all(self.fd, run, placed[0][1])
                for digest, offset, length in placed:
                    self.pending[digest] = (self.name, offset, length)
                run.clear()
                placed.clear()
                in_run.clear()

        for i, (digest, data) in enumerate(items):
            if digest in self.pending or digest in in_run:
                continue
            in_run.add(digest)
            if self.fd is None:
                self._open_pack()
            placed.append((digest, self.size, len(data)))
            self.entries.append(placed[-1])
            run.append(data)
            self.size += len(data)
            written[i] = True
            if self.size >= PACK_TARGET or len(run) >= _IOV_MAX:
                write_run()
                if self.size >= PACK_TARGET:
                    self.seal()
        write_run()
        return written

    def _open_pack(self) -> None:
        self.name = uuid.uuid4().hex + ".pack"
        self.fd = os.open(self.root / "tmp" / self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444)
        self.size = 0
        self.entries = []

    def seal(self) -> None:
        """Close the open pack and move it into packs/ (not yet indexed)."""
        if self.fd is None:
            return
        fd, name = self.fd, self.name
        self.fd = None
        final = self.pack_path(name)
        try:
            pwrite_all(fd, encode_footer(name, self.size, self.entries), self.size)
            final.parent.mkdir(exist_ok=True)
        except OSError:
            os.close(fd)
            self._forget(name)
            raise
        self.entries = []
        if not self.background:
            try:
                _datasync_close(fd)
            except OSError:
                self._forget(name)
                raise
            os.rename(self.root / "tmp" / name, final)
            _fsync_dir(final.parent)
            self.sealed.append(name)
            self._held[name] = os.open(final, os.O_RDONLY)
            return
        os.rename(self.root / "tmp" / name, final)
        self.sealed.append(name)
        self._held[name] = os.open(final, os.O_RDONLY)
        # write the sealed pack to disk now, while the next one fills: the sync before the
        # index commit then finds little left to write (the kernel would otherwise hold
        # gigabytes of dirty pages until then)
        try:
            flush = _flusher().submit(_datasync_close, fd)
        except RuntimeError:  # the interpreter is shutting down: no new threads, flush here
            flush = Future()
            try:
                _datasync_close(fd)
                flush.set_result(None)
            except OSError as exc:
                flush.set_exception(exc)
        self._flushing.append((name, flush))

    def wait_flushes(self, where: Path) -> None:
        """Wait for the background flushes. A pack that could not be written (EIO, a full
        disk) is forgotten with its objects, unindexed, so that no later sync indexes it and
        the next log stores those objects again."""
        flushing, self._flushing = self._flushing, []
        if self._pid != os.getpid():
            return  # inherited through fork: the parent's flushes are the parent's to wait for
        failed = {pack: exc for pack, f in flushing if (exc := f.exception()) is not None}
        if not failed:
            return
        for pack in failed:
            self._forget(pack)
        pack, exc = next(iter(failed.items()))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise exc  # the owner says "disk full"
        raise StoreError(
            f"cannot write pack {pack} of the object store at {where}: {exc}; nothing of it "
            "was indexed. Free space or fix the disk, then log again"
        )

    def wait_flushes_quietly(self) -> None:
        if self._pid == os.getpid():
            for _pack, f in self._flushing:
                f.exception()
        self._flushing = []

    def take(self) -> list[Row]:
        """The rows of everything sealed, handed to the index (and forgotten here), in digest
        order as `LocalPackStore` indexes them (a server's upload of 20,000 objects in random
        order took three times as long to index)."""
        rows = sorted((d, pack, off, n) for d, (pack, off, n) in self.pending.items())
        self.forget_taken()
        return rows

    def forget_taken(self) -> None:
        """Forget everything sealed: the owner has indexed it."""
        self.pending.clear()
        self.sealed.clear()
        self._release()

    def _release(self) -> None:
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    def _forget(self, name: str) -> None:
        """Throw one pack away, with its objects (it could not be written whole)."""
        self.pending = {d: loc for d, loc in self.pending.items() if loc[0] != name}
        self.sealed = [n for n in self.sealed if n != name]
        fd = self._held.pop(name, None)
        if fd is not None:
            os.close(fd)
        (self.root / "tmp" / name).unlink(missing_ok=True)
        self.pack_path(name).unlink(missing_ok=True)
        if name == self.name:
            self.entries = []

    def abort(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Throw away everything written and not yet indexed; the sealed packs in ``keep``
        (indexed after all) are only forgotten."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            (self.root / "tmp" / self.name).unlink(missing_ok=True)
        self.wait_flushes_quietly()
        for name in self.sealed:
            if name not in keep:
                self.pack_path(name).unlink(missing_ok=True)
        self.sealed.clear()
        self.pending.clear()
        self.entries = []
        self._release()


class LocalPackStore:
    """An `ObjectStore` and `PackStore` on a local folder (see the module doc)."""

    default_settle = 1.0  # gc: seconds between dropping rows and the last read of the roots
    leftover_kind = "tmp"

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.url = str(self.root)
        self.where = self.url
        try:
            (self.root / "packs").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open the object store at {self.root}: {exc}") from exc
        try:
            self.index = PackIndex(self.root / "index.db", cache=False)
        except StoreError as exc:
            raise StoreError(f"cannot open the object store at {self.root}: {exc}") from exc
        self._lock = threading.RLock()
        self._writer = _PackWriter(self.root, background=True)
        self._readers: dict[str, int] = {}
        self._warm: dict[str, Location] = {}

    def __repr__(self) -> str:
        return f"<LocalPackStore {self.root}>"

    # --- lookups -----------------------------------------------------------------------------
    def _locate_many(self, digests: list[str]) -> dict[str, Location]:
        found: dict[str, Location] = {}
        with self._lock:
            pending = self._writer.pending
            for d in digests:
                if d in pending:
                    found[d] = pending[d]
            found.update(self.index.locate(d for d in digests if d not in found))
        return found

    def warm(self, digests: list[str]) -> None:
        """Look many objects up at once ahead of reading them (downloads)."""
        self._warm = self._locate_many(digests)

    def locate(self, digest: str) -> Location:
        """Where an object is: (pack, offset, length)."""
        loc = self._warm.get(digest) or self._locate_many([digest]).get(digest)
        if loc is None:
            raise ObjectNotFoundError(
                f"object {digest} is not in the store {self.root}; the store may have been "
                "damaged or garbage-collected, log the data again",
                digest,
            )
        return loc

    def has(self, digest: str) -> bool:
        return bool(self._locate_many([digest]))

    def missing(self, digests: Iterable[str]) -> set[str]:
        absent = set(digests)
        with self._lock:
            absent.difference_update(self._writer.pending.keys() & absent)
            absent.difference_update(self.index.present(absent))
        return absent

    # --- writing -----------------------------------------------------------------------------
    def put(self, digest: str, data: bytes | memoryview) -> bool:
        """Store ``data`` under its digest. True when bytes were written."""

        def write(fd: int, offset: int) -> None:
            pwrite_all(fd, data, offset)

        with self._lock, self._writing():
            return self._append(digest, len(data), write)

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]:
        with self._lock, self._writing():
            written = self._writer.append_many(items)
            if len(self._writer.pending) >= INDEX_EVERY:
                self._index_written_now(replace=False)
            return written

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool:
        """Store ``length`` bytes of open file ``fd`` at ``offset``, copied inside the kernel."""

        def write(out: int, out_offset: int) -> None:
            _copy(fd, offset, out, out_offset, length)

        with self._lock, self._writing():
            return self._append(digest, length, write)

    def _append(self, digest: str, length: int, write: Write) -> bool:
        written = self._writer.append(digest, length, write)
        if len(self._writer.pending) >= INDEX_EVERY:
            # a log of millions of objects: index what it wrote so far, so that memory stays
            # bounded and a log interrupted now (Ctrl-C, a crash) leaves these objects for the
            # next log to reuse (unreferenced, gc reclaims them after its grace period)
            self._index_written_now(replace=False)
        return written

    def add(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.missing([digest]):
            self.put(digest, data)
        return digest

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk throws away everything written and not yet indexed (nothing of it is
        left behind: no temp pack, no sealed pack) and says so (the caller holds the lock)."""
        try:
            yield
        except DiskFullError as exc:
            raise self._disk_full(str(exc)) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self._disk_full(exc.strerror or str(exc)) from None

    def _disk_full(self, why: str) -> DiskFullError:
        written = sum(n for _, _, n in self._writer.pending.values())
        self.discard()
        return DiskFullError(
            f"disk full: cannot write to the object store at {self.root} ({why}). Nothing of "
            f"what was being stored was kept ({_mib(written)} had been written when the disk "
            "filled). Free more than that on the file system holding the store (`cairn gc` "
            "frees the space of deleted versions, or delete other files), then try again"
        )

    def discard(self) -> None:
        """Throw away every object put since the last sync (their temp and sealed packs). A
        drop is counted: a log in another thread of this process that put some of them sees
        it before committing, and stores them again."""
        with self._lock:
            had = bool(self._writer.pending)
            self._abort_writer()
            if had:
                with contextlib.suppress(StoreError):
                    self.index.count_drop()

    def _abort_writer(self) -> None:
        """Throw away what was written and not indexed (the caller holds the lock). A pack
        whose rows were committed is kept: an interrupt (Ctrl-C) can land between the index's
        commit and the writer forgetting what it indexed, and deleting the pack then would
        leave the index pointing at nothing."""
        sealed = list(self._writer.sealed)
        try:
            keep = self.index.packs_with_rows(sealed)
        except BaseException:
            keep = set(sealed)  # unsure: an unindexed pack left behind is only garbage
        self._writer.abort(keep)

    def _index_written(self, *, replace: bool) -> list[Row]:
        """Seal, wait for the flushes, sync the file system, then index what was written
        (the caller holds the lock)."""
        with self._writing():
            return self._index_written_now(replace=replace)

    def _index_written_now(self, *, replace: bool) -> list[Row]:
        self._writer.seal()
        self._writer.wait_flushes(self.root)
        if not self._writer.sealed:
            return []
        syncfs(self.root)
        # in digest order: SQLite inserts neighbouring keys page by page (random order costs
        # about 1.6x as much at a million objects)
        rows = sorted((d, p, o, n) for d, (p, o, n) in self._writer.pending.items())
        self.index.add(rows, replace=replace)
        self._writer.forget_taken()  # indexed: forget them here (kept if indexing failed)
        return rows

    def sync(self) -> None:
        """Make every object written so far durable and visible to other processes."""
        with self._lock:
            self._index_written(replace=False)

    # --- reading -----------------------------------------------------------------------------
    def _reader(self, pack: str) -> int:
        with self._lock:
            if pack == self._writer.name and self._writer.fd is not None:
                return self._writer.fd
            fd = self._readers.get(pack)
            if fd is None:
                path = self._writer.pack_path(pack)
                if not path.exists():
                    path = self.root / "tmp" / pack  # sealed moments ago by this process
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    raise ObjectNotFoundError(
                        f"pack {pack} is missing from the store {self.root}; the store is "
                        "damaged, log the data again",
                        pack,
                    ) from None
                self._readers[pack] = fd
            return fd

    def get(self, digest: str, verify: bool = True) -> bytes:
        pack, offset, length = self.locate(digest)
        data = os.pread(self._reader(pack), length, offset)
        if len(data) != length or (verify and hash_bytes(data) != digest):
            raise self.forget_corrupt(digest)
        return data

    def forget_corrupt(self, digest: str) -> IntegrityError:
        """Forget an object whose stored bytes are damaged (its index row goes, counted as a
        drop), so that the next log of the data that produced it stores it again. Returns
        the error to raise."""
        with contextlib.suppress(StoreError):
            self.delete(digest)
        return IntegrityError(
            f"stored object {digest} is corrupt (its bytes hash differently); the store has "
            "forgotten it: log the data that produced it again to store it again (`cairn "
            "check` names the versions it belongs to)",
            digest=digest,
        )

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        """Copy an object's bytes into ``out_fd`` at ``out_offset`` (unverified: the caller
        hashes what it wrote). Returns the length."""
        pack, offset, length = self.locate(digest)
        _copy(self._reader(pack), offset, out_fd, out_offset, length)
        return length

    def read_at(self, pack: str, offset: int, length: int) -> bytes:
        """The bytes at a known location (gc reads packs whose rows it has dropped)."""
        return os.pread(self._reader(pack), length, offset)

    def delete(self, digest: str) -> None:
        """Forget an object (its bytes stay in its pack until the pack is rewritten)."""
        with self._lock:
            self._warm.pop(digest, None)
            self._writer.pending.pop(digest, None)
            self.index.remove(digest)

    def generation(self) -> int | None:
        """How many times objects were dropped from this store. A logger compares it before
        and after its checks: unchanged means nothing it found has gone since."""
        return self.index.generation()

    def all_digests(self) -> Iterator[str]:
        yield from self.index.digests()

    def pack_path(self, name: str) -> Path:
        return self._writer.pack_path(name)

    # --- one server upload request ------------------------------------------------------------
    def open_upload(self) -> LocalUpload:
        return LocalUpload(self)

    # --- garbage collection (`cairn.objects.gc` over the `PackStore` protocol) ------------------
    @contextlib.contextmanager
    def gc_lock(self) -> Iterator[None]:
        fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another gc is running on the store {self.root}") from None
            yield
        finally:
            os.close(fd)

    def snapshot(self, grace_seconds: float) -> list[Row]:
        """Every index row (gc reads it before the roots: a later row is never a candidate)."""
        return self.index.rows()

    def packs(self) -> dict[str, tuple[int, float]]:
        """Every pack file: name -> (size, mtime)."""
        found: dict[str, tuple[int, float]] = {}
        for sub in (self.root / "packs").iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                if path.name.endswith(".pack"):
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    found[path.name] = (st.st_size, st.st_mtime)
        return found

    def flush_moved(self) -> int:
        """Like sync(), but the written objects' rows replace existing rows (gc copies live
        objects out of a pack it is about to drop). Returns the bytes of the new packs."""
        with self._lock:
            rows = self._index_written(replace=True)
        return sum(self.pack_path(p).stat().st_size for p in {r[1] for r in rows})

    def drop_packs(self, packs: list[str]) -> None:
        """Delete, in one transaction, every index row pointing into these packs."""
        with self._lock:
            self._warm = {}
            self.index.drop_packs(packs)

    def restore_packs(self, packs: list[str], rows: list[Row]) -> None:
        """Put back index rows of dropped packs (gc found a new version that needs them)."""
        self.index.add(rows)

    def delete_pack(self, pack: str) -> bool:
        with self._lock:
            fd = self._readers.pop(pack, None)
            if fd is not None:
                os.close(fd)
        try:
            self.pack_path(pack).unlink()
        except FileNotFoundError:
            return False
        return True

    def orphans(
        self, files: dict[str, tuple[int, float]], indexed: set[str], now: float, grace: float
    ) -> list[str]:
        old = [p for p, (_, mtime) in files.items() if p not in indexed and now - mtime >= grace]
        if not old:
            return []
        opened = _open_files()
        if opened is None:  # cannot tell which are open: only the very old
            limit = max(grace, DEFAULT_GRACE_SECONDS)
            old = [p for p in old if now - files[p][1] >= limit]
        else:
            old = [p for p in old if os.path.realpath(self.pack_path(p)) not in opened]
        # indexed since the snapshot (its writer let it go only after indexing it)?
        return sorted(set(old) - self.index.packs_with_rows(old))

    def pack_entries(self, pack: str) -> list[Entry] | None:
        try:
            fd = os.open(self.pack_path(pack), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            found = read_footer(lambda offset, length: os.pread(fd, length, offset), size)
        finally:
            os.close(fd)
        return found[2] if found is not None else None

    def index_pack(self, pack: str, size: int, entries: list[Entry]) -> None:
        self.index.add([(d, pack, offset, length) for d, offset, length in entries])

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        """Temp packs of crashed writers: old enough and open in no process."""
        doomed: list[tuple[str, int]] = []
        opened = _open_files()
        for path in sorted((self.root / "tmp").iterdir()):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime < grace_seconds:
                continue
            if opened is None:
                if now - st.st_mtime < max(grace_seconds, DEFAULT_GRACE_SECONDS):
                    continue
            elif os.path.realpath(path) in opened:
                continue
            doomed.append((str(path), st.st_size))
        return doomed

    def remove_leftover(self, name: str) -> bool:
        try:
            Path(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            try:
                self.sync()
            except BaseException:
                self._abort_writer()  # what is not indexed: leave nothing of it behind
                raise
            finally:
                self._writer.wait_flushes_quietly()
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
            self.index.close()


class LocalUpload:
    """The objects of one server upload request on a `LocalPackStore`: written to a pack of
    their own and indexed only by ``commit``, or thrown away by ``abort``, leaving nothing.

    Committing flushes only this request's pack (``fdatasync``, then the folder it moved into),
    not the whole file system as the store's ``sync`` does: requests running at the same time
    do not wait for each other's data."""

    def __init__(self, store: LocalPackStore) -> None:
        self.store = store
        self._writer = _PackWriter(store.root, background=False)

    def put(self, digest: str, data: bytes | memoryview) -> bool:
        def write(fd: int, offset: int) -> None:
            pwrite_all(fd, data, offset)

        with self._writing():
            return self._writer.append(digest, len(data), write)

    def commit(self) -> None:
        with self._writing():
            try:
                self._writer.seal()
            except BaseException:
                self._writer.abort()
                raise
            if self._writer.sealed:
                self.store.index.add(self._writer.take())

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except (OSError, DiskFullError) as exc:
            full = isinstance(exc, DiskFullError) or exc.errno in (errno.ENOSPC, errno.EDQUOT)
            if not full:
                raise
            self._writer.abort()
            raise DiskFullError(
                f"disk full: the server cannot write to its object store at "
                f"{self.store.root}; nothing of this upload was kept. The server's "
                "administrator must free space there (`cairn gc --store …` frees the space "
                "of deleted versions)"
            ) from None

    def abort(self) -> None:
        self._writer.abort()


_FLUSHER: ThreadPoolExecutor | None = None
_FLUSHER_LOCK = threading.Lock()


def _flusher() -> ThreadPoolExecutor:
    """One thread per process writes sealed packs to disk, in the order they were sealed."""
    global _FLUSHER
    with _FLUSHER_LOCK:
        if _FLUSHER is None:
            _FLUSHER = ThreadPoolExecutor(1, thread_name_prefix="cairn-pack-flush")
        return _FLUSHER


def _forget_flusher() -> None:
    global _FLUSHER, _FLUSHER_LOCK
    _FLUSHER = None  # a forked child has no copy of the parent's thread
    _FLUSHER_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_flusher)


def _datasync_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
        # the pack is on disk: let its pages go, so the next pack is written into pages just
        # freed rather than into more memory (gigabytes of cached packs help no one and, on a
        # VM, fresh memory costs the host a fault per page)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _mib(n: int) -> str:
    return f"{max(1, -(-n // (1 << 20)))} MiB"


def _writev_all(fd: int, buffers: list[bytes | memoryview], offset: int) -> None:
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        n = os.pwritev(fd, views, offset)
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> None:
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, src_offset + done, dst_offset + done)
        except OSError:
            n = 0
        if n == 0:
            data = os.pread(src, min(length - done, 16 << 20), src_offset + done)
            if not data:
                raise EOFError(f"source ended {length - done} bytes early")
            n = os.pwrite(dst, data, dst_offset + done)
        done += n


def _open_files() -> set[str] | None:
    """Paths any visible process has open (Linux /proc), or None when that cannot be known."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    opened: set[str] = set()
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            fds = list((pid / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                opened.add(os.readlink(fd))
            except OSError:
                pass
    return opened


__all__ = ["PACK_TARGET", "LocalPackStore", "LocalUpload"]
