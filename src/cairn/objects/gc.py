"""Garbage collection of a packed object store (`cairn gc`): the local one, or packs on a bucket.

Mark: every object reachable from the live roots (version root trees and pages, file blobs,
chunk lists and their chunks) and every other object named as live (runs' git diffs).

Sweep, safely while other processes log:

- Only packs older than the grace period (their file's mtime) are touched. A pack with no live
  object is dropped; a pack whose live objects fill less than half of it is rewritten: its live
  objects are copied into a new pack through the normal put path and indexed durably (synced)
  *before* the old pack's rows are deleted and the file unlinked.
- The roots are read again after marking (a version committed meanwhile may reuse an old
  object) and once more after the old rows are deleted, a moment later, but before any pack
  file is unlinked: an object a new version reaches gets its row back and its pack is kept.
- Unindexed temp packs under ``tmp/`` older than the grace period and open in no process are
  left by a crashed writer and removed. Unindexed packs under ``packs/`` are left alone: a
  running logger seals full packs there and indexes them only at its end.

Marking and the sweep policy are shared; what differs between a local store and a bucket is a
`PackStore`: list packs with their size and age, the index rows, copy live objects to a new
pack, drop and restore packs' index entries, delete a pack, and the leftovers of crashed
writers (``tmp/`` locally, never-committed direct uploads under ``uploads/`` on a bucket).
On a bucket, "dropping" a pack's rows is deleting its index object, which every other process
sees: their existence checks ask the bucket (see `PackedRemoteObjectDB.missing`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects import tree
from cairn.objects.chunking import decode_chunk_list
from cairn.objects.packdb import PackedObjectDB

if TYPE_CHECKING:
    from cairn.storage.cloud_packs import PackedRemoteObjectDB

DEFAULT_GRACE_SECONDS = 24 * 3600.0
# between deleting index objects and reading the roots once more: more than the VERIFY_AGE of
# PackedRemoteObjectDB.missing plus the time from a logger's last check to its commit
BUCKET_SETTLE_SECONDS = 10.0
REWRITE_BELOW = 0.5  # rewrite a pack whose live bytes are less than this share of it

Row = tuple[str, str, int, int]  # digest, pack, offset, length
LiveSet = tuple[Iterable[str], Iterable[str]]  # (version root digests, other live objects)
RootsFn = Callable[[], LiveSet]
ProgressFn = Callable[[str], None]


@dataclass
class GcReport:
    dry_run: bool
    grace_seconds: float
    live_objects: int = 0
    packs_total: int = 0
    packs_rewritten: int = 0
    packs_deleted: int = 0
    objects_dropped: int = 0
    bytes_freed: int = 0  # pack bytes removed minus bytes written to new packs
    tmp_packs_removed: int = 0
    uploads_removed: int = 0  # bucket: direct uploads never committed, older than the grace
    objects_rescued: int = 0  # kept because a version committed during gc reached them
    store_bytes_before: int = 0
    store_bytes_after: int = 0
    store: str = ""
    rewritten: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pack_files(odb: PackedObjectDB) -> dict[str, os.stat_result]:
    found: dict[str, os.stat_result] = {}
    for sub in (odb.root / "packs").iterdir():
        if not sub.is_dir():
            continue
        for path in sub.iterdir():
            if path.name.endswith(".pack"):
                try:
                    found[path.name] = path.stat()
                except FileNotFoundError:
                    pass
    return found


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


def _live_of(roots: Iterable[str] | RootsFn, leaves: Iterable[str]) -> tuple[list[str], list[str]]:
    if callable(roots):
        r, extra = roots()
        return list(r), [*extra, *leaves]
    return list(roots), list(leaves)


class _Marker:
    def __init__(self, load: Callable[[str], bytes]) -> None:
        self.load = load
        self.marked: set[str] = set()
        self._walked: set[str] = set()

    def _get(self, digest: str) -> bytes:
        try:
            return self.load(digest)
        except ObjectNotFoundError as exc:
            raise StoreError(
                f"gc stopped before deleting: a live version refers to {digest}, which "
                "is missing from the store (the store is damaged; run `cairn artifact "
                "verify` on your versions)"
            ) from exc

    def mark(
        self, roots: Iterable[str], leaves: Iterable[str], present: Callable[[str], bool]
    ) -> None:
        for leaf in leaves:
            if present(leaf):
                self.marked.add(leaf)
        for digest, _data, found in tree.reachable(roots, self._get, self._walked):
            self.marked.add(digest)
            for link in found:
                if link.kind == "blob":
                    self.marked.add(link.digest)
                elif link.kind == "chunks" and link.digest not in self.marked:
                    self.marked.add(link.digest)
                    self.marked.update(d for d, _ in decode_chunk_list(self._get(link.digest)))


class PackStore(Protocol):
    """The pack operations a sweep needs; everything else (marking, the plan, the order of
    deletions, the rescue) is shared. A pack's age is its file's mtime or its bucket object's
    last-modified time."""

    where: str
    default_settle: float

    def lock(self) -> contextlib.AbstractContextManager[None]: ...

    def index_rows(self) -> list[Row]:
        """A snapshot of the index, taken before the roots are read (an object indexed later
        is never a candidate)."""
        ...

    def packs(self) -> dict[str, tuple[int, float]]:
        """Every pack: name -> (size in bytes, modification time)."""
        ...

    def load(self, digest: str) -> bytes: ...

    def has(self, digest: str) -> bool: ...

    def read(self, pack: str, offset: int, length: int) -> bytes: ...

    def copy(self, digest: str, data: bytes) -> None:
        """Write a live object into a new pack (the normal put path)."""
        ...

    def flush(self) -> None:
        """Make the copies durable and indexed."""
        ...

    def drop(self, packs: list[str]) -> None:
        """Remove the packs' index entries (others stop finding their objects)."""
        ...

    def restore(self, packs: list[str], rows: list[Row]) -> None:
        """Index ``rows`` of dropped ``packs`` again (their bytes are still there)."""
        ...

    def delete_pack(self, pack: str) -> bool: ...

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        """Unindexed garbage of crashed writers, old enough to remove: (name, size)."""
        ...

    def remove_leftover(self, name: str) -> bool: ...


class _ObjectAccess:
    """What both kinds of pack store do the same way: read, test and copy single objects
    through the object database (``self.odb``)."""

    odb: PackedObjectDB | PackedRemoteObjectDB

    def load(self, digest: str) -> bytes:
        return self.odb.get(digest, verify=False)

    def has(self, digest: str) -> bool:
        return self.odb.has(digest)

    def read(self, pack: str, offset: int, length: int) -> bytes:
        return self.odb.read_at(pack, offset, length)

    def copy(self, digest: str, data: bytes) -> None:
        self.odb.put(digest, data)


class LocalPacks(_ObjectAccess):
    """The local `PackedObjectDB`: packs are files, the index is ``index.db``."""

    default_settle = 1.0
    odb: PackedObjectDB

    def __init__(self, odb: PackedObjectDB) -> None:
        self.odb = odb
        self.where = str(odb.root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        fd = os.open(self.odb.root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another gc is running on the store {self.odb.root}") from None
            yield
        finally:
            os.close(fd)

    def index_rows(self) -> list[Row]:
        return self.odb.index_rows()

    def packs(self) -> dict[str, tuple[int, float]]:
        return {name: (st.st_size, st.st_mtime) for name, st in _pack_files(self.odb).items()}

    def flush(self) -> None:
        self.odb.sync_moved()

    def drop(self, packs: list[str]) -> None:
        self.odb.drop_pack_rows(packs)

    def restore(self, packs: list[str], rows: list[Row]) -> None:
        self.odb.restore_rows(rows)

    def delete_pack(self, pack: str) -> bool:
        self.odb.close_pack(pack)
        try:
            self.odb.pack_path(pack).unlink()
        except FileNotFoundError:
            return False
        return True

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        # temp packs of crashed writers: old enough and open in no process
        doomed: list[tuple[str, int]] = []
        opened = _open_files()
        for path in sorted((self.odb.root / "tmp").iterdir()):
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


class BucketPacks(_ObjectAccess):
    """A `PackedRemoteObjectDB`: ``packs/<id>.pack`` objects, each indexed by an
    ``index/<id>.idx`` object; a pack's age is its object's last-modified time. Dropping a
    pack deletes its index object (other processes' existence checks see that at once);
    restoring puts the same index back."""

    default_settle = BUCKET_SETTLE_SECONDS
    odb: PackedRemoteObjectDB

    def __init__(self, odb: PackedRemoteObjectDB, grace_seconds: float) -> None:
        self.odb = odb
        self.where = odb.url
        self.grace_seconds = grace_seconds
        self.storage = odb.storage
        self._dropped: dict[str, tuple[int, list[tuple[str, int, int]]]] = {}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        # one gc at a time on this machine (two gcs on one bucket are safe, only wasteful:
        # each re-reads the roots after deleting indexes and before deleting packs)
        folder = Path(os.environ.get("TMPDIR") or "/tmp")
        name = hashlib.sha256(self.odb.url.encode()).hexdigest()[:16]
        fd = os.open(folder / f"cairn-gc-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another gc is running on the store {self.where}") from None
            yield
        finally:
            os.close(fd)

    def packs(self) -> dict[str, tuple[int, float]]:
        from cairn.storage.cloud_packs import list_info

        found: dict[str, tuple[int, float]] = {}
        for key, size, mtime in list_info(self.storage, "packs/"):
            name = key[len("packs/") :]
            if name.endswith(".pack") and "/" not in name:
                found[name[: -len(".pack")]] = (size, mtime)
        return found

    def index_rows(self) -> list[Row]:
        """Every index the bucket lists now (imported into the local cache); for the packs
        old enough to be candidates, every entry of their index object (an object may be in
        several packs; the cache locates it in one)."""
        self.odb.refresh()
        files = self.packs()
        now = time.time()
        cached, indexed = self.odb.index_rows()
        old = sorted(p for p in indexed if p in files and now - files[p][1] >= self.grace_seconds)
        candidates = set(old)
        rows = [r for r in cached if r[1] not in candidates]
        for pack, got in zip(old, self.odb.index_entries(old), strict=True):
            if got is not None:  # None: deleted meanwhile (another gc), not a candidate
                rows.extend((d, pack, o, n) for d, o, n in got)
        return rows

    def flush(self) -> None:
        self.odb.sync()  # the new packs and their indexes are on the bucket

    def drop(self, packs: list[str]) -> None:
        from cairn.storage.cloud_packs import decode_index, index_key

        for pack in packs:
            try:
                _, size, entries = decode_index(self.storage.get(index_key(pack)))
            except ObjectNotFoundError:
                continue  # another gc dropped it
            self._dropped[pack] = (size, entries)
            self.storage.delete(index_key(pack))
        self.odb.forget_packs(packs)

    def restore(self, packs: list[str], rows: list[Row]) -> None:
        # the whole index goes back as it was: its pack is kept, every byte still there
        for pack in dict.fromkeys(packs):
            kept = self._dropped.pop(pack, None)
            if kept is not None:
                self.odb.publish(pack, kept[0], kept[1])

    def delete_pack(self, pack: str) -> bool:
        from cairn.storage.cloud_packs import pack_key

        self.storage.delete(pack_key(pack))
        return True

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        # a client's direct upload that was never committed (the commit deletes it)
        from cairn.storage.cloud_packs import list_info

        return [
            (key, size)
            for key, size, mtime in list_info(self.storage, "uploads/")
            if now - mtime >= grace_seconds
        ]

    def remove_leftover(self, name: str) -> bool:
        self.storage.delete(name)
        return True


def collect(
    odb: PackedObjectDB | PackedRemoteObjectDB,
    roots: Iterable[str] | RootsFn,
    *,
    grace_seconds: float,
    dry_run: bool,
    leaves: Iterable[str] = (),
    settle_seconds: float | None = None,
    progress: ProgressFn | None = None,
) -> GcReport:
    """Drop the objects no live root reaches from packs older than ``grace_seconds``.

    ``odb`` is the local packed store or packs on a bucket. ``roots`` is either the version
    root digests, or (better, while others may log) a function returning ``(version roots,
    other live objects)`` that gc calls again after marking and before deleting anything.
    ``leaves`` are other live objects (runs' git diffs). ``settle_seconds``: the pause between
    dropping index entries and the last read of the roots (default 1 s locally, 10 s on a
    bucket)."""
    store: PackStore = (
        LocalPacks(odb) if isinstance(odb, PackedObjectDB) else BucketPacks(odb, grace_seconds)
    )
    settle = store.default_settle if settle_seconds is None else settle_seconds
    with store.lock():
        return sweep(store, roots, grace_seconds, dry_run, leaves, settle, progress)


def sweep(
    store: PackStore,
    roots: Iterable[str] | RootsFn,
    grace_seconds: float,
    dry_run: bool,
    leaves: Iterable[str],
    settle_seconds: float,
    progress: ProgressFn | None = None,
) -> GcReport:
    say = progress or (lambda message: None)
    report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds, store=store.where)
    now = time.time()
    say("reading the index")
    # the index is read before the roots: an object indexed later is never a candidate
    rows = store.index_rows()
    snapshot: dict[str, Row] = {}
    by_pack: dict[str, list[Row]] = {}
    for row in rows:
        snapshot.setdefault(row[0], row)
        by_pack.setdefault(row[1], []).append(row)
    files = store.packs()
    report.packs_total = len(files)
    report.store_bytes_before = sum(size for size, _ in files.values())

    def load(digest: str) -> bytes:
        try:
            return store.load(digest)
        except ObjectNotFoundError:
            row = snapshot.get(digest)
            if row is None:
                raise
            return store.read(row[1], row[2], row[3])

    def present(digest: str) -> bool:
        return digest in snapshot or store.has(digest)

    say("marking live objects")
    marker = _Marker(load)
    marker.mark(*_live_of(roots, leaves), present)
    if callable(roots):  # a version committed while marking may reuse an old object
        marker.mark(*_live_of(roots, leaves), present)

    def plan() -> tuple[list[str], list[str]]:
        rewrite, delete = [], []
        for pack, pack_rows in sorted(by_pack.items()):
            st = files.get(pack)
            if st is None or now - st[1] < grace_seconds:
                continue
            live = sum(r[3] for r in pack_rows if r[0] in marker.marked)
            if live == 0:
                delete.append(pack)
            elif live < REWRITE_BELOW * st[0]:
                rewrite.append(pack)
        return rewrite, delete

    rewrite, delete = plan()
    report.live_objects = len(marker.marked & snapshot.keys())
    leftovers = store.leftovers(now, grace_seconds)

    if dry_run:
        report.rewritten, report.deleted = rewrite, delete
        report.packs_rewritten, report.packs_deleted = len(rewrite), len(delete)
        for pack in rewrite + delete:
            dead = [r for r in by_pack[pack] if r[0] not in marker.marked]
            live_bytes = sum(r[3] for r in by_pack[pack] if r[0] in marker.marked)
            report.objects_dropped += len(dead)
            report.bytes_freed += files[pack][0] - live_bytes
        _count_leftovers(report, store, len(leftovers))
        report.bytes_freed += sum(size for _, size in leftovers)
        report.store_bytes_after = report.store_bytes_before - report.bytes_freed
        report.objects_rescued = 0
        return report

    removed = 0
    for name, size in leftovers:
        if store.remove_leftover(name):
            removed += 1
            report.bytes_freed += size
    _count_leftovers(report, store, removed)

    # 1. copy the live objects of the packs to rewrite, and index the copies durably
    written = 0
    moved: set[str] = set()
    for i, pack in enumerate(rewrite):
        say(f"rewriting pack {i + 1}/{len(rewrite)}")
        for digest, _pack, offset, length in by_pack[pack]:
            if digest not in marker.marked or digest in moved:
                continue
            data = store.read(pack, offset, length)
            if len(data) != length or hash_bytes(data) != digest:
                raise IntegrityError(
                    f"gc stopped: stored object {digest} in pack {pack} is corrupt; nothing "
                    "was deleted",
                    digest=digest,
                )
            store.copy(digest, data)
            written += length
            moved.add(digest)
    if moved:
        store.flush()

    # 2. read the roots again: a pack that a new version now needs is kept
    if callable(roots):
        marker.mark(*_live_of(roots, leaves), present)
    drop = [
        p
        for p in rewrite + delete
        if all(r[0] in moved or r[0] not in marker.marked for r in by_pack[p])
    ]
    if drop:
        say(f"dropping {len(drop)} packs from the index")
        try:
            store.drop(drop)
        except BaseException:  # a bucket may fail half-way: put back what went
            store.restore(drop, [r for p in drop for r in by_pack[p] if r[0] not in moved])
            raise
        # 3. a moment later, once more before anything is deleted: a version committed by a
        # logger that found these objects present just before their index went gets them back
        if callable(roots):
            if settle_seconds > 0:
                say(f"waiting {settle_seconds:g} s for logs in flight")
                time.sleep(settle_seconds)
            before = set(marker.marked)
            try:
                marker.mark(*_live_of(roots, leaves), present)
            except BaseException:
                store.restore(drop, [r for p in drop for r in by_pack[p] if r[0] not in moved])
                raise
            revived = marker.marked - before
            if revived:
                back = [
                    r for p in drop for r in by_pack[p] if r[0] in revived and r[0] not in moved
                ]
                keep = sorted({r[1] for r in back})
                store.restore(keep, back)
                report.objects_rescued = len(back)
                drop = [p for p in drop if p not in keep]

    # 4. delete the old packs
    for i, pack in enumerate(drop):
        say(f"deleting pack {i + 1}/{len(drop)}")
        if not store.delete_pack(pack):
            continue
        report.bytes_freed += files[pack][0]
        report.objects_dropped += sum(1 for r in by_pack[pack] if r[0] not in moved)
        if pack in rewrite:
            report.rewritten.append(pack)
        else:
            report.deleted.append(pack)
    report.bytes_freed -= written
    report.packs_rewritten, report.packs_deleted = len(report.rewritten), len(report.deleted)
    report.store_bytes_after = sum(size for size, _ in store.packs().values())
    return report


def _count_leftovers(report: GcReport, store: PackStore, n: int) -> None:
    if isinstance(store, LocalPacks):
        report.tmp_packs_removed = n
    else:
        report.uploads_removed = n
