"""The SQLite index of a pack store: ``digest -> (pack, offset, length)``.

One module for both pack stores. For a local store it is the store's own ``index.db``, the
truth about which objects exist (``synchronous=FULL``); a row is written only after its pack
is durable. For a bucket store it is a cache of the bucket's index objects on this machine
(``cache_dir/<hash of the URL>/index.db``, or memory), which can always be rebuilt by reading
them again; it also knows every pack's size (``packs``) and which objects a pack holds though
another pack locates them (``also``: dedup across writers).

Tables:

- ``objects (digest, pack, offset, length)``: one location per object.
- ``drops (generation)``: local stores: how many times objects were dropped (gc, or a log
  forgetting its own trees); while it stays 0, every object ever indexed is still there.
- ``packs (pack, size)`` and ``also (pack, digest)``: bucket caches.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from cairn.errors import DiskFullError, StoreError
from cairn.objects.packs.format import Entry, Location, Row

_BATCH = 500

_LOCAL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, pack TEXT NOT NULL,"
    " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS drops (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " generation INTEGER NOT NULL);"
)
_CACHE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, pack TEXT NOT NULL,"
    " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS packs (pack TEXT PRIMARY KEY, size INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    # objects a pack holds too, though `objects` locates them in another pack
    "CREATE TABLE IF NOT EXISTS also (pack TEXT NOT NULL, digest TEXT NOT NULL,"
    " PRIMARY KEY (pack, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS objects_by_pack ON objects (pack);"
    "CREATE TEMP TABLE IF NOT EXISTS incoming (digest TEXT PRIMARY KEY,"
    " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
)


class PackIndex:
    """The index of one pack store; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path | None, *, cache: bool) -> None:
        """``cache``: a bucket store's cache (packs and also tables, relaxed durability);
        otherwise a local store's index. ``path`` None keeps it in memory."""
        self.path = path
        self.cache = cache
        where = str(path) if path is not None else ":memory:"
        self._lock = threading.Lock()
        with self._guard():
            try:
                self._db = sqlite3.connect(
                    where, timeout=60, check_same_thread=False, isolation_level=None
                )
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot open the index {where}: {exc}") from exc
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=" + ("NORMAL" if cache else "FULL"))
            self._db.executescript(_CACHE_SCHEMA if cache else _LOCAL_SCHEMA)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors as the store's: a damaged file says what to run, a full disk says
        so."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            where = self.path or "(in memory)"
            text = str(exc)
            if "full" in text:
                raise DiskFullError(
                    f"disk full: cannot write the index {where} ({text}); free space on that "
                    "file system (`cairn gc` frees the space of deleted versions) and try again"
                ) from None
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in text:
                raise StoreError(f"the index {where} cannot be used: {text}") from None
            if self.cache:
                raise StoreError(
                    f"the index cache {where} is damaged ({text}); delete it (it is rebuilt "
                    "from the bucket) and try again"
                ) from None
            raise StoreError(
                f"the index of the object store, {where}, is damaged ({text}); run `cairn "
                "check --rebuild-index` to rebuild it from the packs"
            ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the lock held)."""
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # --- lookups -----------------------------------------------------------------------------
    def locate(self, digests: Iterable[str]) -> dict[str, Location]:
        """Where the listed objects are; those not indexed are left out."""
        found: dict[str, Location] = {}
        rest = sorted(set(digests))  # in index order: neighbouring lookups share B-tree pages
        with self._lock, self._guard():
            for i in range(0, len(rest), _BATCH):
                batch = rest[i : i + _BATCH]
                rows = self._db.execute(
                    "SELECT digest, pack, offset, length FROM objects WHERE digest IN "
                    f"({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                for digest, pack, offset, length in rows:
                    found[digest] = (pack, offset, length)
        return found

    def present(self, digests: Iterable[str]) -> set[str]:
        """The listed digests that are indexed."""
        found: set[str] = set()
        rest = sorted(set(digests))
        with self._lock, self._guard():
            for i in range(0, len(rest), _BATCH):
                batch = rest[i : i + _BATCH]
                found.update(
                    d
                    for (d,) in self._db.execute(
                        "SELECT digest FROM objects WHERE digest IN "
                        f"({','.join('?' * len(batch))})",
                        batch,
                    )
                )
        return found

    def rows(self) -> list[Row]:
        """Every row: (digest, pack, offset, length)."""
        with self._lock, self._guard():
            rows = self._db.execute("SELECT digest, pack, offset, length FROM objects").fetchall()
        return [(d, p, int(o), int(n)) for d, p, o, n in rows]

    def packs_with_rows(self, packs: Iterable[str]) -> set[str]:
        """Those of ``packs`` that locate at least one object."""
        wanted = set(packs)
        if not wanted:
            return set()
        with self._lock, self._guard():
            if self.cache or len(wanted) <= 64:  # a few packs: one look each
                found: set[str] = set()
                for pack in sorted(wanted):
                    row = self._db.execute(
                        "SELECT 1 FROM objects WHERE pack = ? LIMIT 1", (pack,)
                    ).fetchone()
                    if row is not None:
                        found.add(pack)
                return found
            return {p for (p,) in self._db.execute("SELECT DISTINCT pack FROM objects")} & wanted

    def digests(self) -> list[str]:
        with self._lock, self._guard():
            return [d for (d,) in self._db.execute("SELECT digest FROM objects ORDER BY digest")]

    # --- writes ------------------------------------------------------------------------------
    def add(self, rows: Iterable[Row], *, replace: bool = False) -> None:
        """Index objects; an object indexed already keeps its row unless ``replace``."""
        verb = "REPLACE" if replace else "IGNORE"
        with self._tx() as db:
            db.executemany(f"INSERT OR {verb} INTO objects VALUES (?, ?, ?, ?)", rows)

    def remove(self, digest: str) -> None:
        """Forget one object (counted as a drop in a local index)."""
        with self._tx() as db:
            db.execute("DELETE FROM objects WHERE digest = ?", (digest,))
            if not self.cache:
                self._count_drop(db)

    def drop_packs(self, packs: Iterable[str]) -> int:
        """Delete, in one transaction, every row pointing into these packs."""
        names = list(packs)
        with self._tx() as db:
            n = 0
            for name in names:
                n += db.execute("DELETE FROM objects WHERE pack = ?", (name,)).rowcount
            if n and not self.cache:
                self._count_drop(db)
        return n

    def generation(self) -> int:
        """How many times objects were dropped from a local store."""
        with self._lock, self._guard():
            row = self._db.execute("SELECT generation FROM drops WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def set_generation(self, generation: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO drops VALUES (0, ?)", (generation,))

    def count_drop(self) -> None:
        with self._tx() as db:
            self._count_drop(db)

    @staticmethod
    def _count_drop(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO drops VALUES (0, 1) "
            "ON CONFLICT (id) DO UPDATE SET generation = generation + 1"
        )

    # --- a bucket store's cache ----------------------------------------------------------------
    def known_packs(self) -> set[str]:
        with self._lock, self._guard():
            return {p for (p,) in self._db.execute("SELECT pack FROM packs")}

    def pack_size(self, pack: str) -> int | None:
        with self._lock, self._guard():
            row = self._db.execute("SELECT size FROM packs WHERE pack = ?", (pack,)).fetchone()
        return int(row[0]) if row else None

    def record_pack(self, pack: str, size: int, entries: list[Entry]) -> None:
        """Import one pack's index: its objects not located elsewhere are located in it; the
        others are remembered as also held by it."""
        with self._tx() as db:
            db.execute("DELETE FROM incoming")
            db.executemany("INSERT OR IGNORE INTO incoming VALUES (?, ?, ?)", entries)
            db.execute(
                "INSERT OR IGNORE INTO objects SELECT digest, ?, offset, length FROM incoming",
                (pack,),
            )
            db.execute(
                "INSERT OR IGNORE INTO also SELECT ?, i.digest FROM incoming i "
                "JOIN objects o ON o.digest = i.digest WHERE o.pack != ?",
                (pack, pack),
            )
            db.execute("DELETE FROM incoming")
            db.execute("INSERT OR REPLACE INTO packs VALUES (?, ?)", (pack, size))

    def forget_packs(self, packs: list[str]) -> set[str]:
        """Forget packs, in one transaction. Returns the other packs that also hold objects
        the forgotten ones located (reading their index again locates those objects)."""
        others: set[str] = set()
        with self._tx() as db:
            for i in range(0, len(packs), 200):
                part = packs[i : i + 200]
                marks = ",".join("?" * len(part))
                others.update(
                    p
                    for (p,) in db.execute(
                        "SELECT DISTINCT a.pack FROM also a JOIN objects o "
                        f"ON o.digest = a.digest WHERE o.pack IN ({marks})",
                        part,
                    )
                )
                for table in ("objects", "also", "packs"):
                    db.execute(f"DELETE FROM {table} WHERE pack IN ({marks})", part)
        return others

    def members(self, packs: Iterable[str]) -> dict[str, set[str]]:
        """Every object each pack holds (by its index), including those found in another."""
        wanted = list(dict.fromkeys(packs))
        members: dict[str, set[str]] = {p: set() for p in wanted}
        with self._lock, self._guard():
            for i in range(0, len(wanted), 200):
                batch = wanted[i : i + 200]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT pack, digest FROM objects WHERE pack IN ({marks}) "
                    f"UNION ALL SELECT pack, digest FROM also WHERE pack IN ({marks})",
                    batch + batch,
                ).fetchall()
                for pack, digest in rows:
                    members[pack].add(digest)
        return members

    def close(self) -> None:
        with self._lock, self._guard():
            self._db.close()


__all__ = ["PackIndex"]
