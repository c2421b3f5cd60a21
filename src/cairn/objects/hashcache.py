"""Remembers file digests by (device, inode, size, mtime_ns, ctime_ns), so unchanged files are
not re-read. A local SQLite file; losing it costs only time.

ctime is part of the key because tools can put a file's mtime back after editing it (`touch -d`,
`rsync -t`, archive extraction) but nothing can set ctime: any write moves it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# a file modified within this window of being hashed may change again within the same
# timestamp tick; such files are not cached (git's "racy clean" problem)
RACY_NS = 1_000_000_000


@dataclass(frozen=True)
class CachedDigest:
    digest: str
    chunks: str | None


StatKey = tuple[int, int, int, int, int]

# one B-tree keyed by inode (what lookups ask by): a row costs ~120 bytes and one insert; the
# first layout (a rowid table, its (dev, ino) key and an index on ino) cost ~140 bytes and
# three, and is converted when a cache in it is opened (`_convert`)
_FILES = (
    " (dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL, chunks TEXT,"
    " PRIMARY KEY (ino, dev)) WITHOUT ROWID"
)
_SCHEMA = "CREATE TABLE IF NOT EXISTS files" + _FILES
# whole folders of plain files a log stored (`cairn.objects.folders`), per store
_FOLDERS = (
    "CREATE TABLE IF NOT EXISTS folders (store TEXT NOT NULL, path TEXT NOT NULL,"
    " sig TEXT NOT NULL, tree TEXT NOT NULL, size INTEGER NOT NULL, count INTEGER NOT NULL,"
    " generation INTEGER NOT NULL, PRIMARY KEY (store, path))"
)


@dataclass(frozen=True)
class CachedFolder:
    """A folder on disk as a log stored it: its signature, its tree object, the total size
    and number of its files, and the store's drop count when it was stored."""

    sig: str
    tree: str
    size: int
    count: int
    generation: int


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.execute(_FOLDERS)
        except sqlite3.DatabaseError:
            # a damaged cache is only a lost optimisation: start a new one
            self._db.close()
            path.unlink(missing_ok=True)
            self._db = sqlite3.connect(
                path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute(_SCHEMA)
            self._db.execute(_FOLDERS)
        self._convert()
        self._db.execute("CREATE INDEX IF NOT EXISTS folders_path ON folders (path)")

    def _layout(self) -> str:
        row = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()
        return str(row[0]) if row else ""

    def _convert(self) -> None:
        """A cache in the first layout is rewritten in the current one, its records kept (a
        million-file dataset would otherwise be read again). If another process holds the
        cache, it is left as it is: both layouts answer the same queries."""
        if "WITHOUT ROWID" in self._layout().upper():
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            if "WITHOUT ROWID" not in self._layout().upper():  # not converted meanwhile
                self._db.execute("CREATE TABLE files_new" + _FILES)
                self._db.execute(
                    "INSERT OR REPLACE INTO files_new SELECT dev, ino, size, mtime_ns,"
                    " ctime_ns, digest, chunks FROM files WHERE dev IS NOT NULL"
                    " AND ino IS NOT NULL AND size IS NOT NULL AND mtime_ns IS NOT NULL"
                    " AND ctime_ns IS NOT NULL"
                )
                self._db.execute("DROP TABLE files")  # and its index on ino
                self._db.execute("ALTER TABLE files_new RENAME TO files")
            self._db.execute("COMMIT")
        except sqlite3.OperationalError:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def get_many(self, keys: list[StatKey]) -> dict[StatKey, CachedDigest]:
        found: dict[StatKey, CachedDigest] = {}
        wanted = set(keys)
        inodes = sorted({k[1] for k in keys})
        with self._lock:
            for i in range(0, len(inodes), 500):
                batch = inodes[i : i + 500]
                rows = self._db.execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, digest, chunks FROM files"
                    " WHERE ino IN "
                    f"({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                for dev, ino, size, mtime_ns, ctime_ns, digest, chunks in rows:
                    key = (dev, ino, size, mtime_ns, ctime_ns)
                    if key in wanted:
                        found[key] = CachedDigest(digest, chunks)
        return found

    def put_many(self, items: list[tuple[StatKey, CachedDigest]], *, racy_ok: bool = False) -> None:
        """Remember digests. Files modified within the last second are skipped unless
        ``racy_ok`` (Cairn wrote and hashed them itself, as downloads do)."""
        now = time.time_ns()
        rows = [
            (*k, v.digest, v.chunks)
            for k, v in items
            # any write moves mtime to "now"; an mtime older than a tick therefore cannot
            # come back unchanged after a later write (and ctime in the key catches an mtime
            # put back by hand)
            if racy_ok or now - k[3] > RACY_NS
        ]
        self._insert("files", rows)

    def _insert(self, table: str, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.OperationalError:
                # another process holds the cache for long: skip, it is only a cache
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def get_folder(self, store: str, path: str) -> CachedFolder | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sig, tree, size, count, generation FROM folders"
                " WHERE store = ? AND path = ?",
                (store, path),
            ).fetchone()
        return CachedFolder(*row) if row else None

    def folder_holds(self, path: str, tree: str) -> set[str]:
        """The signatures with which the folder ``path`` was seen holding exactly the files of
        ``tree`` (logged from there, or downloaded there), whatever the store."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sig FROM folders WHERE path = ? AND tree = ?", (path, tree)
            ).fetchall()
        return {sig for (sig,) in rows}

    def folder_trees(self, store: str, root: str, limit: int) -> list[str]:
        """The tree objects of at most ``limit`` folders at or below ``root`` recorded for
        ``store``."""
        root = root.rstrip("/") or "/"
        below = root if root == "/" else root + "/"
        with self._lock:
            rows = self._db.execute(
                # below/ .. below0: every path that starts with below ('0' follows '/')
                "SELECT tree FROM folders WHERE store = ? AND (path = ? OR (path >= ?"
                " AND path < ?)) LIMIT ?",
                (store, root, below, below[:-1] + "0", limit),
            ).fetchall()
        return [tree for (tree,) in rows]

    def put_folders(self, store: str, folders: list[tuple[str, CachedFolder]]) -> None:
        """Remember (folder on disk, what it was stored as) for ``store``."""
        self._insert(
            "folders",
            [(store, path, f.sig, f.tree, f.size, f.count, f.generation) for path, f in folders],
        )

    def close(self) -> None:
        self._db.close()
