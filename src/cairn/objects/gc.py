"""Garbage collection of the local packed object store (`cairn gc`).

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
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects import tree
from cairn.objects.chunking import decode_chunk_list
from cairn.objects.packdb import PackedObjectDB

DEFAULT_GRACE_SECONDS = 24 * 3600.0
REWRITE_BELOW = 0.5  # rewrite a pack whose live bytes are less than this share of it

Row = tuple[str, str, int, int]  # digest, pack, offset, length
LiveSet = tuple[Iterable[str], Iterable[str]]  # (version root digests, other live objects)
RootsFn = Callable[[], LiveSet]


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
    objects_rescued: int = 0  # kept because a version committed during gc reached them
    store_bytes_before: int = 0
    store_bytes_after: int = 0
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
        stack = [r for r in roots if r not in self._walked]
        while stack:
            digest = stack.pop()
            if digest in self._walked:
                continue
            doc = tree.parse(self._get(digest))
            self._walked.add(digest)
            self.marked.add(digest)
            if doc["cairn"] == "pages":
                stack.extend(p["d"] for p in doc["pages"])
                continue
            for entry in doc["entries"]:
                kind = entry["t"]
                if kind == "d":
                    stack.append(entry["d"])
                elif kind == "f":
                    chunks = entry.get("c")
                    if not chunks:
                        self.marked.add(entry["d"])
                    elif chunks not in self.marked:
                        self.marked.add(chunks)
                        self.marked.update(d for d, _ in decode_chunk_list(self._get(chunks)))
                # "r" (references) have no stored bytes


def collect(
    odb: PackedObjectDB,
    roots: Iterable[str] | RootsFn,
    *,
    grace_seconds: float,
    dry_run: bool,
    leaves: Iterable[str] = (),
    settle_seconds: float = 1.0,
) -> GcReport:
    """Drop the objects no live root reaches from packs older than ``grace_seconds``.

    ``roots`` is either the version root digests, or (better, while others may log) a function
    returning ``(version roots, other live objects)`` that gc calls again after marking and
    before unlinking. ``leaves`` are other live objects (runs' git diffs)."""
    lock = os.open(odb.root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another gc is running on the store {odb.root}") from None
        return _collect(odb, roots, grace_seconds, dry_run, leaves, settle_seconds)
    finally:
        os.close(lock)


def _collect(
    odb: PackedObjectDB,
    roots: Iterable[str] | RootsFn,
    grace_seconds: float,
    dry_run: bool,
    leaves: Iterable[str],
    settle_seconds: float,
) -> GcReport:
    report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds)
    now = time.time()
    # the index is read before the roots: an object indexed later is never a candidate
    rows = odb.index_rows()
    snapshot: dict[str, Row] = {r[0]: r for r in rows}
    by_pack: dict[str, list[Row]] = {}
    for row in rows:
        by_pack.setdefault(row[1], []).append(row)
    files = _pack_files(odb)
    report.packs_total = len(files)
    report.store_bytes_before = sum(st.st_size for st in files.values())

    def load(digest: str) -> bytes:
        try:
            return odb.get(digest, verify=False)
        except ObjectNotFoundError:
            row = snapshot.get(digest)
            if row is None:
                raise
            return odb.read_at(row[1], row[2], row[3])

    def present(digest: str) -> bool:
        return digest in snapshot or odb.has(digest)

    marker = _Marker(load)
    marker.mark(*_live_of(roots, leaves), present)
    if callable(roots):  # a version committed while marking may reuse an old object
        marker.mark(*_live_of(roots, leaves), present)

    def plan() -> tuple[list[str], list[str]]:
        rewrite, delete = [], []
        for pack, pack_rows in sorted(by_pack.items()):
            st = files.get(pack)
            if st is None or now - st.st_mtime < grace_seconds:
                continue
            live = sum(r[3] for r in pack_rows if r[0] in marker.marked)
            if live == 0:
                delete.append(pack)
            elif live < REWRITE_BELOW * st.st_size:
                rewrite.append(pack)
        return rewrite, delete

    rewrite, delete = plan()
    report.live_objects = len(marker.marked & snapshot.keys())

    # temp packs of crashed writers: old enough and open in no process
    tmp_doomed: list[tuple[Path, int]] = []
    opened = _open_files()
    for path in sorted((odb.root / "tmp").iterdir()):
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
        tmp_doomed.append((path, st.st_size))

    if dry_run:
        report.rewritten, report.deleted = rewrite, delete
        report.packs_rewritten, report.packs_deleted = len(rewrite), len(delete)
        for pack in rewrite + delete:
            dead = [r for r in by_pack[pack] if r[0] not in marker.marked]
            live_bytes = sum(r[3] for r in by_pack[pack] if r[0] in marker.marked)
            report.objects_dropped += len(dead)
            report.bytes_freed += files[pack].st_size - live_bytes
        report.tmp_packs_removed = len(tmp_doomed)
        report.bytes_freed += sum(size for _, size in tmp_doomed)
        report.store_bytes_after = report.store_bytes_before - report.bytes_freed
        report.objects_rescued = 0
        return report

    for path, size in tmp_doomed:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        report.tmp_packs_removed += 1
        report.bytes_freed += size

    # 1. copy the live objects of the packs to rewrite, and index the copies durably
    written = 0
    moved: set[str] = set()
    for pack in rewrite:
        for digest, _pack, offset, length in by_pack[pack]:
            if digest not in marker.marked:
                continue
            data = odb.read_at(pack, offset, length)
            if len(data) != length or hash_bytes(data) != digest:
                raise IntegrityError(
                    f"gc stopped: stored object {digest} in pack {pack} is corrupt; nothing "
                    "was deleted",
                    digest=digest,
                )
            odb.put(digest, data)
            written += length
            moved.add(digest)
    if moved:
        odb.sync_moved()

    # 2. read the roots again: a pack that a new version now needs is kept
    if callable(roots):
        marker.mark(*_live_of(roots, leaves), present)
    drop = [
        p
        for p in rewrite + delete
        if all(r[0] in moved or r[0] not in marker.marked for r in by_pack[p])
    ]
    if drop:
        odb.drop_pack_rows(drop)
        # 3. a moment later, once more before anything is unlinked: a version committed by a
        # logger that found these objects present just before their rows went gets them back
        if callable(roots):
            if settle_seconds > 0:
                time.sleep(settle_seconds)
            before = set(marker.marked)
            try:
                marker.mark(*_live_of(roots, leaves), present)
            except BaseException:
                odb.restore_rows(r for p in drop for r in by_pack[p] if r[0] not in moved)
                raise
            revived = marker.marked - before
            if revived:
                back = [
                    r for p in drop for r in by_pack[p] if r[0] in revived and r[0] not in moved
                ]
                odb.restore_rows(back)
                report.objects_rescued = len(back)
                keep = {r[1] for r in back}
                drop = [p for p in drop if p not in keep]

    # 4. unlink the old packs
    for pack in drop:
        odb.close_pack(pack)
        try:
            odb.pack_path(pack).unlink()
        except FileNotFoundError:
            continue
        report.bytes_freed += files[pack].st_size
        report.objects_dropped += sum(1 for r in by_pack[pack] if r[0] not in moved)
        if pack in rewrite:
            report.rewritten.append(pack)
        else:
            report.deleted.append(pack)
    report.bytes_freed -= written
    report.packs_rewritten, report.packs_deleted = len(report.rewritten), len(report.deleted)
    report.store_bytes_after = sum(st.st_size for st in _pack_files(odb).values())
    return report
