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
  left by a crashed writer and removed.
- Unindexed packs (a log killed between sealing a pack and indexing it, a server killed
  mid-upload, a gc killed between dropping a pack's rows and deleting it) older than the grace
  period and open in no process (a running logger keeps its sealed packs open until they are
  indexed; on a bucket, where nothing is "open", they must also be ``ORPHAN_AGE`` old)
  are read by their footer: indexed again when a live object is found only there, else
  deleted.

Marking and the sweep policy are here; what differs between a local store and a bucket is
behind the `PackStore` protocol (`cairn.objects.packs`), which both stores implement: list
packs with their size and age, snapshot the index, copy live objects to a new pack, drop and
restore packs' index entries, delete a pack, and the leftovers of crashed writers (``tmp/``
locally, never-committed direct uploads under ``uploads/`` on a bucket). On a bucket,
"dropping" a pack's rows is deleting its index object, which every other process sees: their
existence checks ask the bucket (see `BucketPackStore.missing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects import tree
from cairn.objects.chunking import decode_chunk_list
from cairn.objects.packs import PackStore
from cairn.objects.packs.format import Entry, Row, encode_footer

DEFAULT_GRACE_SECONDS = 24 * 3600.0
REWRITE_BELOW = 0.5  # rewrite a pack whose live bytes are less than this share of it

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
    orphan_packs_removed: int = 0  # unindexed packs of crashed writers (or gcs), deleted
    orphan_packs_indexed: int = 0  # ... indexed again: a live object was only there
    uploads_removed: int = 0  # bucket: direct uploads never committed, older than the grace
    parts_removed: int = 0  # parts of distributed versions never finished, older than the grace
    objects_rescued: int = 0  # kept because a version committed during gc reached them
    store_bytes_before: int = 0
    store_bytes_after: int = 0
    store: str = ""
    rewritten: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def collect(
    store: PackStore,
    roots: Iterable[str] | RootsFn,
    *,
    grace_seconds: float,
    dry_run: bool,
    leaves: Iterable[str] = (),
    settle_seconds: float | None = None,
    progress: ProgressFn | None = None,
) -> GcReport:
    """Drop the objects no live root reaches from packs older than ``grace_seconds``.

    ``store`` is a local pack store or packs on a bucket. ``roots`` is either the version
    root digests, or (better, while others may log) a function returning ``(version roots,
    other live objects)`` that gc calls again after marking and before deleting anything.
    ``leaves`` are other live objects (runs' git diffs). ``settle_seconds``: the pause between
    dropping index entries and the last read of the roots (default 1 s locally, 10 s on a
    bucket)."""
    settle = store.default_settle if settle_seconds is None else settle_seconds
    with store.gc_lock():
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
    rows = store.snapshot(grace_seconds)
    snapshot: dict[str, Row] = {}
    by_pack: dict[str, list[Row]] = {}
    for row in rows:
        snapshot.setdefault(row[0], row)
        by_pack.setdefault(row[1], []).append(row)
    files = store.packs()
    report.packs_total = len(files)
    report.store_bytes_before = sum(size for size, _ in files.values())
    # packs no index lists, left by crashed writers: what they hold, by their footers
    orphans: dict[str, list[Entry] | None] = {
        pack: store.pack_entries(pack)
        for pack in store.orphans(files, set(by_pack), now, grace_seconds)
    }
    orphan_rows: dict[str, Row] = {}
    for pack, entries in orphans.items():
        for digest, offset, length in entries or []:
            orphan_rows.setdefault(digest, (digest, pack, offset, length))

    def load(digest: str) -> bytes:
        try:
            return store.get(digest, verify=False)
        except ObjectNotFoundError:
            row = snapshot.get(digest) or orphan_rows.get(digest)
            if row is None:
                raise
            return store.read_at(row[1], row[2], row[3])

    def present(digest: str) -> bool:
        return digest in snapshot or digest in orphan_rows or store.has(digest)

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
            # a pack's footer lists its objects (48 bytes each and a header): not dead bytes
            elif live < REWRITE_BELOW * (st[0] - 48 * len(pack_rows) - 256):
                rewrite.append(pack)
        return rewrite, delete

    rewrite, delete = plan()
    report.live_objects = len(marker.marked & snapshot.keys())
    leftovers = store.leftovers(now, grace_seconds)
    # an orphan holding a live object the index lacks is indexed again; the others go
    revive = {
        pack
        for pack, entries in orphans.items()
        if any(d in marker.marked and d not in snapshot for d, _, _ in entries or [])
    }

    if dry_run:
        report.rewritten, report.deleted = rewrite, delete
        report.packs_rewritten, report.packs_deleted = len(rewrite), len(delete)
        copied: dict[str, Entry] = {}
        for pack in rewrite + delete:
            dead = [r for r in by_pack[pack] if r[0] not in marker.marked]
            report.objects_dropped += len(dead)
            report.bytes_freed += files[pack][0]
            for digest, _pack, _offset, length in by_pack[pack]:
                if digest in marker.marked:
                    copied.setdefault(digest, (digest, 0, length))
        if copied:  # what the rewrite writes: the live objects in a new pack, with its footer
            size = sum(n for _, _, n in copied.values())
            report.bytes_freed -= size + len(encode_footer(rewrite[0], size, list(copied.values())))
        _count_leftovers(report, store, len(leftovers))
        report.bytes_freed += sum(size for _, size in leftovers)
        report.orphan_packs_indexed = len(revive)
        report.orphan_packs_removed = len(orphans) - len(revive)
        report.bytes_freed += sum(files[p][0] for p in orphans if p not in revive)
        report.store_bytes_after = report.store_bytes_before - report.bytes_freed
        report.objects_rescued = 0
        return report

    removed = 0
    for name, size in leftovers:
        if store.remove_leftover(name):
            removed += 1
            report.bytes_freed += size
    _count_leftovers(report, store, removed)
    for pack, entries in sorted(orphans.items()):
        if pack in revive and entries is not None:
            store.index_pack(pack, files[pack][0], entries)
            report.orphan_packs_indexed += 1
        elif store.delete_pack(pack):
            report.orphan_packs_removed += 1
            report.bytes_freed += files[pack][0]

    # 1. copy the live objects of the packs to rewrite, and index the copies durably
    written = 0
    moved: set[str] = set()
    for i, pack in enumerate(rewrite):
        say(f"rewriting pack {i + 1}/{len(rewrite)}")
        for digest, _pack, offset, length in by_pack[pack]:
            if digest not in marker.marked or digest in moved:
                continue
            data = store.read_at(pack, offset, length)
            if len(data) != length or hash_bytes(data) != digest:
                raise IntegrityError(
                    f"gc stopped: stored object {digest} in pack {pack} is corrupt; nothing "
                    "was deleted",
                    digest=digest,
                )
            store.put(digest, data)
            written += length
            moved.add(digest)
    if moved:
        written = store.flush_moved()  # the new packs, footers included

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
            store.drop_packs(drop)
        except BaseException:  # a bucket may fail half-way: put back what went
            store.restore_packs(drop, [r for p in drop for r in by_pack[p] if r[0] not in moved])
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
                store.restore_packs(
                    drop, [r for p in drop for r in by_pack[p] if r[0] not in moved]
                )
                raise
            revived = marker.marked - before
            if revived:
                back = [
                    r for p in drop for r in by_pack[p] if r[0] in revived and r[0] not in moved
                ]
                keep = sorted({r[1] for r in back})
                store.restore_packs(keep, back)
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
    if store.leftover_kind == "tmp":
        report.tmp_packs_removed = n
    else:
        report.uploads_removed = n


def reachable(roots: Iterable[str], load: Callable[[str], bytes]) -> set[str]:
    """Every object the roots reach: trees and pages, blobs, chunk lists and their chunks
    (`cairn check` names the versions a damaged object belongs to with it)."""
    marker = _Marker(load)
    marker.mark(roots, [], lambda digest: False)
    return marker.marked
