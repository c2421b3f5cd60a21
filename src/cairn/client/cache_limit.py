"""The cap on a client's download cache (``CAIRN_DIR/cache/objects``, ``CAIRN_CACHE_MAX``).

The cache is a `LocalPackStore` of objects fetched from a server. It is kept under a limit by
evicting whole packs, least recently used first:

* **Last use** is the pack file's mtime: a pack is written when its objects are fetched, and
  touched (``utime``) when it is read, at most once a minute per pack and process, so tracking
  costs one system call per pack and download, not one per object.
* **Eviction** (`CacheLimit.evict`) runs under a file lock (``evict.lock``), one process at a
  time. A pack's index rows are dropped (one transaction) before its file is unlinked, so no
  process finds an index row whose pack is gone; a process that located an object earlier and
  reads an evicted pack either has it open already (an unlinked file stays readable: it reads
  the right bytes) or finds it missing and fetches the object again. Packs are immutable and
  their names never reused, so no reader can get other bytes.
* **Pins**: a process pins each pack it writes from the moment it starts it until its objects
  are indexed, and a download pins the packs holding objects it has not read yet (`Pins`, a
  file per process under ``pins/``, locked while its process lives); no process evicts a
  pinned pack. Any other pack may go, indexed or not: a pack nobody pinned and no index lists
  is a crashed writer's, or a copy of objects another process indexed first (two downloads
  of the same data), and is garbage.
* **The log** (``evictions.jsonl``): the last `LOG_KEEP` evictions (those of one process
  within a minute are one entry), with time, packs and bytes freed and the size after;
  `cairn cache` shows them.

Only the download cache is ever touched here, never the embedded store (``CAIRN_DIR/store``),
which is the user's data, and never a downloaded file: downloads write copies of the cached
bytes into the user's folder (docs/lifecycle.md, "The client cache").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cairn import config
from cairn.errors import ObjectNotFoundError
from cairn.objects.packs.local import LocalPackStore

LOG_NAME = "evictions.jsonl"
LOG_KEEP = 100  # evictions remembered
LOG_MERGE_SECONDS = 60.0  # evictions by one process this close together are one entry
LOCK_NAME = "evict.lock"
PINS_DIR = "pins"
DEAD_WRITER_SECONDS = 24 * 3600.0  # an unpinned temp pack this old is a dead writer's
COMPACT_LINES = 10_000  # a pin file is rewritten with only the live pins past this many lines
TOUCH_EVERY = 60.0  # seconds: a pack's last use is recorded at most this often per process


@dataclass
class Eviction:
    """One eviction: what went and what is left."""

    time: float
    packs: int
    bytes: int
    size_before: int
    size_after: int
    limit: int | None
    reason: str  # "download" (automatic), "clean" (`cairn cache clean`)
    pid: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def disk_bytes(path: Path) -> int:
    """The size of the file system holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_blocks * st.f_frsize


def limit_for(root: Path) -> int | None:
    """The cap of the download cache at ``root`` in bytes (``CAIRN_CACHE_MAX``, default a
    share of its disk); None: no limit. A bad value raises `InvalidInputError` naming the
    variable."""
    kind, _ = config.cache_max_setting()
    if kind in ("none", "bytes"):
        return config.cache_max_bytes(0)
    return config.cache_max_bytes(disk_bytes(root))


def describe_limit() -> str:
    """How the limit was chosen, for people: ``CAIRN_CACHE_MAX=...`` or the default."""
    kind, _ = config.cache_max_setting()
    if kind == "default":
        floor = config.CACHE_MAX_DEFAULT_FLOOR >> 30
        ceiling = config.CACHE_MAX_DEFAULT_CEILING >> 30
        return (
            f"default: {config.CACHE_MAX_DEFAULT_PERCENT:g}% of the disk, "
            f"at least {floor} GiB, at most {ceiling} GiB"
        )
    return f"{config.CAIRN_CACHE_MAX}={config.cache_max_text()}"


class CachePackStore(LocalPackStore):
    """The download cache's pack store: a `LocalPackStore` whose readers record each pack's
    last use (its mtime) and survive packs evicted by other processes (the object is then
    reported missing, and the client fetches it again)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._touched: dict[str, float] = {}

    def _reader(self, pack: str) -> int:
        try:
            fd = super()._reader(pack)
        except ObjectNotFoundError:
            self.forget_pack(pack)
            raise
        now = time.monotonic()
        last = self._touched.get(pack)
        if last is None or now - last >= TOUCH_EVERY:
            self._touched[pack] = now
            with contextlib.suppress(OSError):  # the open pack (tmp/), or evicted meanwhile
                os.utime(self.pack_path(pack))
        return fd

    def forget_pack(self, pack: str) -> None:
        """A pack is gone (evicted by another process): forget where its objects were, here
        and in the index, so they are fetched again."""
        with self._lock:
            self._warm = {d: loc for d, loc in self._warm.items() if loc[0] != pack}
            self._touched.pop(pack, None)
        with contextlib.suppress(Exception):
            self.index.drop_packs([pack])

    def written_packs(self) -> set[str]:
        """The packs this process has written and not yet indexed (pin them before a sync
        indexes them: from then on another process could evict them)."""
        with self._lock:
            found = {loc[0] for loc in self._writer.pending.values()}
            if self._writer.fd is not None:
                found.add(self._writer.name)
            return found

    def packs_by_object(self, digests: Iterable[str]) -> dict[str, str]:
        """The pack holding each of these objects (those indexed or written here)."""
        return {d: loc[0] for d, loc in self._locate_many(list(digests)).items()}

    def current_pack(self) -> str | None:
        """The pack this process is writing now, if any."""
        with self._lock:
            return self._writer.name if self._writer.fd is not None else None

    def evict_pack(self, pack: str) -> bool:
        """Drop a pack's rows from the index, then delete its file (the caller checked that
        no process pinned it). Returns whether it was deleted."""
        with self._lock:
            self._warm = {d: loc for d, loc in self._warm.items() if loc[0] != pack}
            self._touched.pop(pack, None)
        self.index.drop_packs([pack])
        return self.delete_pack(pack)


class Pins:
    """The packs this process's downloads still need, in ``pins/<pid>-<id>.pins``: lines
    ``+pack`` and ``-pack``, appended. The file is locked while this process lives, so an
    evictor that can lock it knows its writer died and removes it."""

    def __init__(self, root: Path) -> None:
        self.folder = root / PINS_DIR
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._pid = os.getpid()
        self._lines = 0
        self.packs: set[str] = set()

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._pid = os.getpid()
            name = f"{self._pid}-{uuid.uuid4().hex[:8]}"
            self._path = self.folder / f"{name}.pins"
            # locked before it gets its name: an evictor never sees it unlocked (dead)
            making = self.folder / f"{name}.new"
            fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(making, self._path)
            self._fd = fd
        return self._fd

    def add(self, packs: Iterable[str]) -> None:
        with self._lock:
            new = set(packs) - self.packs
            if not new:
                return
            os.write(self._file(), "".join(f"+{p}\n" for p in sorted(new)).encode())
            self.packs |= new
            self._lines += len(new)

    def snapshot(self) -> set[str]:
        """The packs pinned now (a copy)."""
        with self._lock:
            return set(self.packs)

    def remove(self, packs: Iterable[str]) -> None:
        with self._lock:
            gone = set(packs) & self.packs
            if not gone or self._fd is None:
                return
            os.write(self._fd, "".join(f"-{p}\n" for p in sorted(gone)).encode())
            self.packs -= gone
            self._lines += len(gone)
            self._compact()

    def _compact(self) -> None:
        """Write the file again with only the packs pinned now, once it grew long (a reader
        that reads it in between sees fewer pins for a moment: a pack it then evicts is
        fetched again by its reader, never read wrong)."""
        if self._fd is None or self._lines < COMPACT_LINES:
            return
        os.ftruncate(self._fd, 0)
        os.write(self._fd, "".join(f"+{p}\n" for p in sorted(self.packs)).encode())
        self._lines = len(self.packs)

    def close(self) -> None:
        with self._lock:
            self.packs = set()
            if self._fd is not None:
                if self._path is not None:
                    self._path.unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = None


def pinned_by_others(root: Path, mine: Pins | None = None) -> set[str]:
    """The packs every living process's downloads still need (a pin file nobody holds locked
    is a dead process's: it is removed)."""
    folder = root / PINS_DIR
    own = mine._path if mine is not None else None
    found: set[str] = set()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.endswith(".new"):  # a process died naming its pin file
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > 3600:
                    os.unlink(entry.path)
            continue
        if not entry.name.endswith(".pins") or (own is not None and entry.path == str(own)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # alive: read its pins
                with open(os.dup(fd), "rb") as fh:
                    text = fh.read().decode(errors="replace")
                for line in text.splitlines():
                    if line.startswith("+"):
                        found.add(line[1:])
                    elif line.startswith("-"):
                        found.discard(line[1:])
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)  # its process died
        finally:
            os.close(fd)
    return found


def pack_files(root: Path) -> dict[str, tuple[int, float]]:
    """Every pack of the cache: name -> (bytes, last use)."""
    found: dict[str, tuple[int, float]] = {}
    try:
        subs = list(os.scandir(root / "packs"))
    except FileNotFoundError:
        return found
    for sub in subs:
        if not sub.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError), os.scandir(sub.path) as packs:
            for entry in packs:
                if entry.name.endswith(".pack"):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        found[entry.name] = (st.st_size, st.st_mtime)
    return found


def cache_bytes(root: Path) -> int:
    """The bytes of the cache's packs."""
    return sum(size for size, _ in pack_files(root).values())


@contextlib.contextmanager
def eviction_lock(root: Path) -> Iterator[None]:
    """One evicting process at a time per cache."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def evict(
    store: CachePackStore,
    target: int,
    *,
    limit: int | None,
    keep: Iterable[str] = (),
    pins: Pins | None = None,
    reason: str = "download",
    dry_run: bool = False,
) -> Eviction | None:
    """Delete least recently used packs until the cache holds at most ``target`` bytes,
    sparing ``keep``, every pack another living process pinned, and packs being indexed.
    Takes the eviction lock; logs what went. None when nothing had to go."""
    root = store.root
    with eviction_lock(root):
        files = pack_files(root)
        before = sum(size for size, _ in files.values())
        if before <= target:
            return None
        spared = set(keep) | pinned_by_others(root, pins)
        now = time.time()
        freed = 0
        gone = 0
        for name, (size, _used) in sorted(files.items(), key=lambda item: item[1][1]):
            if before - freed <= target:
                break
            if name in spared:
                continue
            if dry_run:
                freed += size
                gone += 1
                continue
            if store.evict_pack(name):
                freed += size
                gone += 1
        if not dry_run:
            _remove_dead_writers(root, spared, now)
        if not gone:
            return None
        done = Eviction(
            time=now,
            packs=gone,
            bytes=freed,
            size_before=before,
            size_after=before - freed,
            limit=limit,
            reason=reason,
            pid=os.getpid(),
        )
        if not dry_run:
            log_eviction(root, done)
        return done


def _remove_dead_writers(root: Path, spared: set[str], now: float) -> None:
    """Temp packs of writers that died (``kill -9`` mid-download): pinned by no living
    process and untouched for a day (the caller holds the eviction lock)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(root / "tmp") as entries:
        for entry in entries:
            if not entry.name.endswith(".pack") or entry.name in spared:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat(follow_symlinks=False).st_mtime >= DEAD_WRITER_SECONDS:
                    os.unlink(entry.path)


def log_eviction(root: Path, done: Eviction) -> None:
    """Append to the eviction log, keeping the last LOG_KEEP (the caller holds the lock)."""
    path = root / LOG_NAME
    lines = read_log(root, raw=True)
    entry = done.to_json()
    if lines:  # one download evicting again and again is one entry
        with contextlib.suppress(ValueError, KeyError, TypeError):
            last = json.loads(lines[-1])
            if (
                last["pid"] == done.pid
                and last["reason"] == done.reason
                and done.time - float(last["time"]) <= LOG_MERGE_SECONDS
            ):
                entry["packs"] += int(last["packs"])
                entry["bytes"] += int(last["bytes"])
                entry["size_before"] = int(last["size_before"])
                lines.pop()
    lines.append(json.dumps(entry, sort_keys=True))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines[-LOG_KEEP:]), encoding="utf-8")
    os.replace(tmp, path)


def read_log(root: Path, *, raw: bool = False) -> list[Any]:
    """The evictions logged, oldest first (``raw``: the JSON lines)."""
    try:
        text = (root / LOG_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    if raw:
        return lines
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


__all__ = [
    "CachePackStore",
    "Eviction",
    "Pins",
    "cache_bytes",
    "describe_limit",
    "evict",
    "eviction_lock",
    "limit_for",
    "log_eviction",
    "pack_files",
    "pinned_by_others",
    "read_log",
]
