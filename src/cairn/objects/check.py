"""`cairn check`: is every object the index lists really in its pack, whole and correct?

Restic's ``check`` and ``check --read-data``, for a local pack store:

- Every index row against its pack: the pack exists and the object lies inside its objects
  (before the footer). With ``read_data``, every listed object is read and hashed (each pack
  front to back, once).
- Damaged objects (missing pack, outside the pack, wrong bytes) are **forgotten**: their index
  rows go (a drop is counted), so the next log of the data that produced them stores them again
  from the user's files, which repairs the store. The versions that reach a damaged object are
  named.
- Packs no index row points to are counted (``cairn gc`` reclaims them, or indexes them again
  when a live object is only there).

`rebuild_index` writes ``index.db`` anew from the packs' footers (every pack Cairn writes ends
with one, `cairn.objects.packs.format`), for a damaged or lost ``index.db``. The old file is
kept beside it as ``index.db.damaged``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cairn.core.digest import new_hasher
from cairn.errors import CairnError, StoreError
from cairn.objects.gc import reachable
from cairn.objects.packs.format import Entry, Row, read_footer
from cairn.objects.packs.index import PackIndex
from cairn.objects.packs.local import LocalPackStore

ProgressFn = Callable[[str], None]
# the live versions: (root digest, the names of the versions with that root)
VersionsFn = Callable[[], list[tuple[str, list[str]]]]
_READ = 8 << 20


@dataclass
class CheckReport:
    store: str
    read_data: bool
    objects: int = 0  # index rows checked
    packs: int = 0  # pack files
    bytes_read: int = 0
    missing_packs: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # digests forgotten
    affected_versions: list[str] = field(default_factory=list)
    unindexed_packs: int = 0
    unindexed_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check(
    store: LocalPackStore,
    versions: VersionsFn | None = None,
    *,
    read_data: bool = False,
    progress: ProgressFn | None = None,
) -> CheckReport:
    """Check ``store`` (see the module doc); damaged objects are forgotten."""
    say = progress or (lambda message: None)
    report = CheckReport(store=store.where, read_data=read_data)
    say("reading the index")
    rows = store.index.rows()
    report.objects = len(rows)
    by_pack: dict[str, list[Row]] = {}
    for row in rows:
        by_pack.setdefault(row[1], []).append(row)
    files = store.packs()
    report.packs = len(files)
    for name, (size, _) in files.items():
        if name not in by_pack:
            report.unindexed_packs += 1
            report.unindexed_bytes += size
    damaged: set[str] = set()
    for i, (pack, pack_rows) in enumerate(sorted(by_pack.items())):
        say(f"checking pack {i + 1}/{len(by_pack)}")
        if pack not in files:
            report.missing_packs.append(pack)
            damaged.update(r[0] for r in pack_rows)
            continue
        damaged.update(_check_pack(store.pack_path(pack), pack_rows, read_data, report))
    report.damaged = sorted(damaged)
    for digest in report.damaged:
        store.forget_corrupt(digest)
    if damaged and versions is not None:
        say("finding the versions that use damaged objects")
        report.affected_versions = _affected(store, versions(), damaged)
    return report


def _check_pack(path: Path, rows: list[Row], read_data: bool, report: CheckReport) -> set[str]:
    bad: set[str] = set()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        report.missing_packs.append(path.name)
        return {r[0] for r in rows}
    try:
        size = os.fstat(fd).st_size
        footer = read_footer(lambda offset, length: os.pread(fd, length, offset), size)
        end = footer[1] if footer is not None else size
        ordered = sorted(rows, key=lambda r: r[2])
        for digest, _pack, offset, length in ordered:
            if offset < 0 or offset + length > end:
                bad.add(digest)
        if read_data:
            for digest, _pack, offset, length in ordered:
                if digest in bad:
                    continue
                hasher = new_hasher(threaded=length >= (1 << 20))
                done = 0
                while done < length:
                    piece = os.pread(fd, min(_READ, length - done), offset + done)
                    if not piece:
                        break
                    hasher.update(piece)
                    done += len(piece)
                report.bytes_read += done
                if done != length or "blake3:" + hasher.hexdigest() != digest:
                    bad.add(digest)
    finally:
        os.close(fd)
    return bad


def _affected(
    store: LocalPackStore, versions: list[tuple[str, list[str]]], damaged: set[str]
) -> list[str]:
    """The live versions that reach a damaged object (or whose tree can no longer be read)."""
    names: set[str] = set()
    for root, named in versions:

        def load(digest: str) -> bytes:
            if digest in damaged:
                raise StoreError(f"object {digest} is damaged")
            return store.get(digest, verify=False)

        try:
            hit = bool(reachable([root], load) & damaged) or root in damaged
        except CairnError:
            hit = True  # a tree of it is damaged or gone
        if hit:
            names.update(named)
    return sorted(names)


@dataclass
class RebuildReport:
    store: str
    packs: int = 0
    objects: int = 0  # rows in the new index
    from_footers: int = 0  # packs indexed from their footer
    kept_rows: int = 0  # rows of packs without a footer, kept from the old index
    unreadable_packs: list[str] = field(default_factory=list)  # no footer, no old rows
    dropped: int = 0  # objects whose bytes did not match (with read_data)
    old_index: str = ""  # where the old index.db was moved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rebuild_index(
    root: Path, *, read_data: bool = False, progress: ProgressFn | None = None
) -> RebuildReport:
    """Write ``root/index.db`` anew from the packs' footers (see the module doc). Packs
    without a footer (written by Cairn before footers existed) keep the rows the old index
    has for them, when it can still be read. Run it while nothing logs to the store."""
    say = progress or (lambda message: None)
    root = root.absolute()
    report = RebuildReport(store=str(root))
    if not (root / "packs").is_dir():
        raise StoreError(f"no Cairn store at {root} (no packs/ folder)")
    with _gc_lock(root):
        say("reading what the old index still holds")
        old_rows, generation = _old_rows(root / "index.db")
        old_by_pack: dict[str, list[Row]] = {}
        for row in old_rows:
            old_by_pack.setdefault(row[1], []).append(row)
        fresh = root / "index.db.rebuild"
        for suffix in ("", "-wal", "-shm"):
            Path(str(fresh) + suffix).unlink(missing_ok=True)
        index = PackIndex(fresh, cache=False)
        try:
            packs = sorted(_pack_files(root))
            report.packs = len(packs)
            paths = {p.name: p for p in packs}
            copies: dict[str, list[Row]] = {}
            for i, path in enumerate(packs):
                say(f"reading pack {i + 1}/{len(packs)}")
                for row in _rows_of(path, old_by_pack.get(path.name, []), read_data, report):
                    copies.setdefault(row[0], []).append(row)
            rows: list[Row] = []
            for digest, found in copies.items():
                # an object stored twice (re-logged after its first copy was damaged): the
                # first copy whose bytes are right
                good = found[0] if len(found) == 1 else _first_good(digest, found, paths)
                if good is None:
                    report.dropped += 1
                else:
                    rows.append(good)
            index.add(rows)
            report.objects = len(rows)
            index.set_generation(generation + 1)
        finally:
            index.close()
        old = root / "index.db"
        if old.exists():
            keep = root / f"index.db.damaged-{int(time.time())}"
            os.replace(old, keep)
            report.old_index = str(keep)
        for suffix in ("-wal", "-shm"):
            Path(str(old) + suffix).unlink(missing_ok=True)
        os.replace(fresh, old)
        _fsync_dir(root)
    return report


def _rows_of(path: Path, old: list[Row], read_data: bool, report: RebuildReport) -> list[Row]:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        footer = read_footer(lambda offset, length: os.pread(fd, length, offset), size)
        entries: list[Entry]
        if footer is not None:
            entries = footer[2]
            report.from_footers += 1
        elif old:
            entries = [(d, o, n) for d, _p, o, n in old if o + n <= size]
            report.kept_rows += len(entries)
        else:
            report.unreadable_packs.append(path.name)
            return []
        rows: list[Row] = []
        for digest, offset, length in entries:
            if read_data:
                data = os.pread(fd, length, offset)
                hasher = new_hasher(threaded=length >= (1 << 20))
                hasher.update(data)
                if len(data) != length or "blake3:" + hasher.hexdigest() != digest:
                    report.dropped += 1
                    continue
            rows.append((digest, path.name, offset, length))
        return rows
    finally:
        os.close(fd)


def _first_good(digest: str, rows: list[Row], paths: dict[str, Path]) -> Row | None:
    for row in rows:
        fd = os.open(paths[row[1]], os.O_RDONLY)
        try:
            data = os.pread(fd, row[3], row[2])
        finally:
            os.close(fd)
        hasher = new_hasher(threaded=len(data) >= (1 << 20))
        hasher.update(data)
        if len(data) == row[3] and "blake3:" + hasher.hexdigest() == digest:
            return row
    return None


def _old_rows(path: Path) -> tuple[list[Row], int]:
    """The rows and drop count an old index still yields (nothing when it is unreadable)."""
    if not path.exists():
        return [], 0
    rows: list[Row] = []
    generation = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for d, p, o, n in db.execute("SELECT digest, pack, offset, length FROM objects"):
                rows.append((str(d), str(p), int(o), int(n)))
            row = db.execute("SELECT generation FROM drops WHERE id = 0").fetchone()
            generation = int(row[0]) if row else 0
        finally:
            db.close()
    except sqlite3.DatabaseError:
        pass  # damaged: what the packs' footers say is all there is
    return rows, generation


def _pack_files(root: Path) -> Iterator[Path]:
    for sub in (root / "packs").iterdir():
        if sub.is_dir():
            yield from (p for p in sub.iterdir() if p.name.endswith(".pack"))


@contextlib.contextmanager
def _gc_lock(root: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"a gc is running on the store {root}; try again after it") from None
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["CheckReport", "RebuildReport", "check", "rebuild_index"]
