"""The local object database: objects appended to pack files, found through an index.

Creating one file per object costs more than the bytes themselves on most file systems (20,000
small files, or the ~4,000 chunks of a 2 GiB checkpoint). So objects are appended to a pack
file of up to PACK_TARGET bytes and an SQLite index maps ``digest -> (pack, offset, length)``.

Write ordering (the invariant of docs/architecture.md holds): a pack is written under
``tmp/``, moved to ``packs/`` and flushed to disk (``syncfs``) before its index rows are
committed, so an object the index lists is always durable and complete. A crash leaves at most
an unindexed pack in ``tmp/``, which is garbage.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.storage.local import _syncfs

PACK_TARGET = 64 << 20

Location = tuple[str, int, int]  # pack name, offset, length


class PackedObjectDB:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.url = str(self.root)
        try:
            (self.root / "packs").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.root / "index.db", timeout=60, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, pack TEXT NOT NULL,"
                " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID"
            )
            # counts the times objects were dropped (gc, or a log forgetting its own trees);
            # while it stays 0, every object ever indexed is still there
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS drops (id INTEGER PRIMARY KEY CHECK (id = 0),"
                " generation INTEGER NOT NULL)"
            )
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"cannot open the object store at {self.root}: {exc}") from exc
        self._lock = threading.RLock()
        self._writer_fd: int | None = None
        self._writer_name = ""
        self._writer_size = 0
        self._pending: dict[str, Location] = {}  # written, not yet indexed
        self._sealed: list[str] = []  # packs complete on disk, rows not yet indexed
        self._readers: dict[str, int] = {}
        self._warm: dict[str, Location] = {}
        self._flushing: list[tuple[str, Future[None]]] = []  # (pack, its background flush)
        self._pid = os.getpid()

    # --- lookups -----------------------------------------------------------------------------
    def _locate_many(self, digests: list[str]) -> dict[str, Location]:
        found: dict[str, Location] = {}
        with self._lock:
            for d in digests:
                if d in self._pending:
                    found[d] = self._pending[d]
            rest = sorted(d for d in digests if d not in found)  # in index order
            for i in range(0, len(rest), 500):
                batch = rest[i : i + 500]
                rows = self._db.execute(
                    "SELECT digest, pack, offset, length FROM objects WHERE digest IN "
                    f"({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                for digest, pack, offset, length in rows:
                    found[digest] = (pack, offset, length)
        return found

    def warm(self, digests: list[str]) -> None:
        """Look many objects up at once ahead of reading them (downloads)."""
        self._warm = self._locate_many(digests)

    def _locate(self, digest: str) -> Location:
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
            absent.difference_update(self._pending.keys() & absent)
            rest = sorted(absent)  # in index order: neighbouring lookups share B-tree pages
            for i in range(0, len(rest), 500):
                batch = rest[i : i + 500]
                found = self._db.execute(
                    f"SELECT digest FROM objects WHERE digest IN ({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                absent.difference_update(d for (d,) in found)
        return absent

    # --- writing -----------------------------------------------------------------------------
    def _writer(self) -> int:
        if self._writer_fd is None:
            self._writer_name = uuid.uuid4().hex + ".pack"
            self._writer_fd = os.open(
                self.root / "tmp" / self._writer_name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444
            )
            self._writer_size = 0
        return self._writer_fd

    def _seal(self) -> None:
        """Close the open pack and move it into packs/ (not yet indexed)."""
        if self._writer_fd is None:
            return
        fd = self._writer_fd
        self._writer_fd = None
        final = self._pack_path(self._writer_name)
        final.parent.mkdir(exist_ok=True)
        os.rename(self.root / "tmp" / self._writer_name, final)
        self._sealed.append(self._writer_name)
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
        self._flushing.append((self._writer_name, flush))

    def _wait_flushes(self) -> None:
        """Wait for the background flushes. A pack that could not be written (EIO, a full
        disk) is forgotten with its objects, unindexed, so that no later sync indexes it and
        the next log stores those objects again."""
        flushing, self._flushing = self._flushing, []
        if self._pid != os.getpid():
            return  # inherited through fork: the parent's flushes are the parent's to wait for
        failed = {pack: exc for pack, f in flushing if (exc := f.exception()) is not None}
        if not failed:
            return
        self._pending = {d: loc for d, loc in self._pending.items() if loc[0] not in failed}
        self._sealed = [name for name in self._sealed if name not in failed]
        for pack in failed:
            self._pack_path(pack).unlink(missing_ok=True)
        pack, exc = next(iter(failed.items()))
        raise StoreError(
            f"cannot write pack {pack} of the object store at {self.root}: {exc}; nothing of it "
            "was indexed. Free space or fix the disk, then log again"
        )

    def _pack_path(self, name: str) -> Path:
        return self.root / "packs" / name[:2] / name

    def _append(self, digest: str, length: int, write: object) -> bool:
        with self._lock:
            if digest in self._pending:
                return False
            fd = self._writer()
            offset = self._writer_size
            assert callable(write)
            write(fd, offset)
            self._writer_size += length
            self._pending[digest] = (self._writer_name, offset, length)
            if self._writer_size >= PACK_TARGET:
                self._seal()
            return True

    def put(self, digest: str, data: bytes | memoryview) -> bool:
        """Store ``data`` under its digest. True when bytes were written."""

        def write(fd: int, offset: int) -> None:
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view = view[n:]
                offset += n

        return self._append(digest, len(data), write)

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool:
        """Store ``length`` bytes of open file ``fd`` at ``offset``, copied inside the kernel."""

        def write(out: int, out_offset: int) -> None:
            _copy(fd, offset, out, out_offset, length)

        return self._append(digest, length, write)

    def add(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.missing([digest]):
            self.put(digest, data)
        return digest

    def sync(self) -> None:
        """Make every object written so far durable and visible to other processes."""
        with self._lock:
            self._seal()
            self._wait_flushes()
            if not self._sealed:
                return
            _syncfs(self.root)
            rows = [
                (digest, pack, offset, length)
                for digest, (pack, offset, length) in self._pending.items()
            ]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending.clear()
            self._sealed.clear()

    # --- reading -----------------------------------------------------------------------------
    def _reader(self, pack: str) -> int:
        with self._lock:
            if pack == self._writer_name and self._writer_fd is not None:
                return self._writer_fd
            fd = self._readers.get(pack)
            if fd is None:
                path = self._pack_path(pack)
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
        pack, offset, length = self._locate(digest)
        data = os.pread(self._reader(pack), length, offset)
        if len(data) != length or (verify and hash_bytes(data) != digest):
            raise IntegrityError(
                f"stored object {digest} is corrupt (its bytes hash differently); "
                "log the data that produced it again",
                digest=digest,
            )
        return data

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        """Copy an object's bytes into ``out_fd`` at ``out_offset`` (unverified: the caller
        hashes what it wrote). Returns the length."""
        pack, offset, length = self._locate(digest)
        _copy(self._reader(pack), offset, out_fd, out_offset, length)
        return length

    def delete(self, digest: str) -> None:
        """Forget an object (its bytes stay in its pack until the pack is rewritten)."""
        with self._lock:
            self._warm.pop(digest, None)
            self._pending.pop(digest, None)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM objects WHERE digest = ?", (digest,))
                self._count_drop()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def generation(self) -> int:
        """How many times objects were dropped from this store. A logger compares it before
        and after its checks: unchanged means nothing it found has gone since."""
        row = self._db.execute("SELECT generation FROM drops WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def _count_drop(self) -> None:
        self._db.execute(
            "INSERT INTO drops VALUES (0, 1) "
            "ON CONFLICT (id) DO UPDATE SET generation = generation + 1"
        )

    # --- garbage collection (cairn.objects.gc) -------------------------------------------------
    def index_rows(self) -> list[tuple[str, str, int, int]]:
        """Every index row: (digest, pack, offset, length)."""
        rows = self._db.execute("SELECT digest, pack, offset, length FROM objects").fetchall()
        return [(d, p, int(o), int(n)) for d, p, o, n in rows]

    def pack_path(self, name: str) -> Path:
        return self._pack_path(name)

    def read_at(self, pack: str, offset: int, length: int) -> bytes:
        """The bytes at a known location (gc reads packs whose rows it has dropped)."""
        return os.pread(self._reader(pack), length, offset)

    def sync_moved(self) -> dict[str, Location]:
        """Like sync(), but the written objects' rows replace existing rows (gc copies live
        objects out of a pack it is about to drop). Returns the new locations."""
        with self._lock:
            moved = dict(self._pending)
            self._seal()
            self._wait_flushes()
            if self._sealed:
                _syncfs(self.root)
            rows = [(d, pack, off, n) for d, (pack, off, n) in moved.items()]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending.clear()
            self._sealed.clear()
            return moved

    def drop_pack_rows(self, packs: Iterable[str]) -> int:
        """Delete, in one transaction, every index row pointing into these packs."""
        names = list(packs)
        with self._lock:
            self._warm = {}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = 0
                for name in names:
                    n += self._db.execute("DELETE FROM objects WHERE pack = ?", (name,)).rowcount
                if n:
                    self._count_drop()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return n

    def restore_rows(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Put back index rows (gc found a new version that needs them)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close_pack(self, name: str) -> None:
        """Close this process's reader of a pack (before gc unlinks it)."""
        with self._lock:
            fd = self._readers.pop(name, None)
            if fd is not None:
                os.close(fd)

    def all_digests(self) -> Iterator[str]:
        for (digest,) in self._db.execute("SELECT digest FROM objects").fetchall():
            yield digest

    def close(self) -> None:
        with self._lock:
            try:
                self.sync()
            finally:
                self._wait_flushes_quietly()
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
            self._db.close()

    def _wait_flushes_quietly(self) -> None:
        if self._pid == os.getpid():
            for _pack, f in self._flushing:
                f.exception()
        self._flushing = []


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
