"""The server's side of the object store: existence checks per caller, verified uploads,
reads, and binding a version's objects to its project.

The store is the same `PackedObjectDB` the embedded mode uses, shared by every server process
(its index is SQLite in WAL mode; each writer appends to a pack file of its own).

* An **upload** request writes into a pack of its own (`UploadPack`); every object's bytes are
  hashed and compared with its digest first. Only when the whole request has arrived and been
  verified is the pack made durable and indexed: a request cut short, malformed or too large
  leaves nothing behind, and its retry stores each object once. Objects the store already has
  are verified and discarded.
* **Existence** is answered per caller: an object counts as present only when the caller may
  see it (`Accounts.known`), so a check never tells a stranger what another project holds.
* **Binding**: when a version is committed its objects are recorded as held by its project
  (`project_objects`), walking the tree from the root and skipping subtrees the project already
  holds. Every object reached must be in the store and known to the committer, so nobody can
  gain access to an object by referencing a digest they only know of.

With ``store_url`` naming a bucket (s3://, gs://, az://) the objects live in packs on object
storage (`PackedRemoteObjectDB`, a local index cache under ``cache_dir``), and any number of
server processes on any machines may share the bucket: an object another process stored is
found by listing the bucket's pack indexes again when a lookup misses. An upload request
writes packs of its own there, indexed only when the whole request was verified.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from cairn.core.digest import hash_bytes
from cairn.errors import (
    CairnError,
    IntegrityError,
    InvalidInputError,
    ObjectNotFoundError,
    StoreError,
)
from cairn.objects import chunking, tree
from cairn.objects.odb import ObjectStore
from cairn.objects.packdb import PackedObjectDB
from cairn.server.accounts import Accounts, Principal
from cairn.server.wire import frame_header
from cairn.storage.cloud_packs import PackedRemoteObjectDB

_SHOWN = 5
SUBTREE_BUDGET = 8 << 20  # bytes of tree objects sent ahead in one request
STREAM_BLOCK = 1 << 20  # bytes per block of a download stream
REFRESH_AGE = 5.0  # seconds: an existence check lists the bucket's indexes at most this often


class Upload(Protocol):
    """The objects of one upload request, stored as a whole by ``commit`` or not at all."""

    def put(self, digest: str, data: bytes | memoryview) -> bool: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class UploadPack(PackedObjectDB):
    """A pack written by one upload request: committed as a whole, or `abort`ed leaving
    nothing behind.

    Committing flushes only this request's pack (``fdatasync``, then the folder it moved into),
    not the whole file system as the embedded store's ``syncfs`` does: requests running at the
    same time do not wait for each other's data."""

    def _seal(self) -> None:
        if self._writer_fd is not None:
            os.fdatasync(self._writer_fd)
        name = self._writer_name if self._writer_fd is not None else None
        super()._seal()
        if name is not None:
            _fsync_dir(self._pack_path(name).parent)

    def sync(self) -> None:
        with self._lock:
            self._seal()
            if not self._sealed:
                return
            rows = [(d, pack, off, n) for d, (pack, off, n) in self._pending.items()]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending.clear()
            self._sealed.clear()

    def abort(self) -> None:
        with self._lock:
            if self._writer_fd is not None:
                os.close(self._writer_fd)
                self._writer_fd = None
                (self.root / "tmp" / self._writer_name).unlink(missing_ok=True)
            for name in self._sealed:
                self._pack_path(name).unlink(missing_ok=True)
            self._sealed.clear()
            self._pending.clear()
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
            self._db.close()

    def commit(self) -> None:
        self.close()  # seals, syncs, indexes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _missing_error(digests: Iterable[str], what: str) -> ObjectNotFoundError:
    missing = sorted(digests)
    shown = ", ".join(missing[:_SHOWN])
    more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
    exc = ObjectNotFoundError(
        f"{len(missing)} object{'s' if len(missing) != 1 else ''} {what} not on the server or "
        f"not yours to use: {shown}{more}. Upload them first.",
        missing[0],
    )
    exc.detail = {"missing": missing[:1000]}  # type: ignore[attr-defined]
    return exc


class ServerObjects:
    def __init__(
        self,
        root: Path,
        accounts: Accounts,
        *,
        store_url: str | None = None,
        store_endpoint: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.accounts = accounts
        self.remote: PackedRemoteObjectDB | None = None
        if store_url:
            self.remote = _open_bucket(store_url, store_endpoint, cache_dir)
            self.store: ObjectStore = self.remote
        else:
            self.store = PackedObjectDB(root)
        self._lock = threading.Lock()

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def describe(self) -> str:
        return str(self.root) if self.remote is None else self.remote.url

    # --- existence -----------------------------------------------------------------------------
    def _absent(self, digests: set[str], fresh: bool) -> set[str]:
        absent = self.store.missing(digests)
        if absent and self.remote is not None:
            # stored through another server process since this one last listed the bucket?
            self.remote.refresh(max_age=None if fresh else REFRESH_AGE)
            absent = self.store.missing(absent)
        return absent

    def missing(
        self, principal: Principal, digests: Iterable[str], *, fresh: bool = False
    ) -> set[str]:
        """The digests the caller must upload: not in the store, or not theirs to see.
        ``fresh``: on a bucket, list the indexes again whenever one is not found (reads and
        binding, where a stale answer would be an error; an upload check may be a second old,
        which costs at most a duplicate upload)."""
        wanted = set(digests)
        absent = self._absent(wanted, fresh)
        present = wanted - absent
        return absent | (present - self.accounts.known(principal, present))

    def check_readable(self, principal: Principal, digests: Iterable[str]) -> None:
        wanted = set(digests)
        unreadable = self.missing(principal, wanted, fresh=True)
        if unreadable:
            raise _missing_error(unreadable, "are" if len(unreadable) != 1 else "is")

    # --- uploads -------------------------------------------------------------------------------
    def open_upload(self) -> Upload:
        if self.remote is not None:
            return self.remote.open_upload()
        return UploadPack(self.root)

    def store_group(self, pack: Upload, frames: list[tuple[str, bytearray]]) -> int:
        """Verify each object against its digest, then write those the store lacks into the
        request's pack. Returns the bytes written."""
        for digest, data in frames:
            if hash_bytes(data) != digest:
                raise IntegrityError(
                    f"the bytes sent for object {digest} hash to {hash_bytes(data)}: the upload "
                    "was corrupted on the way; nothing of this request was stored, send it again",
                    digest=digest,
                )
        lacking = self.store.missing(d for d, _ in frames)
        written = 0
        for digest, data in frames:
            if digest in lacking and pack.put(digest, memoryview(data)):
                written += len(data)
        return written

    # --- reads ---------------------------------------------------------------------------------
    def read(self, digest: str) -> bytes:
        return self.store.get(digest, verify=False)

    def stream(self, digests: list[str]) -> Iterator[bytes]:
        """Frames of the objects, read one at a time (all looked up at once first), sent in
        blocks of about STREAM_BLOCK bytes."""
        if self.remote is not None:
            self.remote.warm(digests)  # read in large blocks with read-ahead
            yield from _frames(self.remote, digests)
            return
        reader = PackedObjectDB(self.root)
        try:
            reader.warm(digests)
            yield from _frames(reader, digests)
        finally:
            reader.close()

    def stream_subtree(
        self, principal: Principal, root: str, budget: int = SUBTREE_BUDGET
    ) -> Iterator[bytes]:
        """Frames of the object ``root`` and, when it is a tree, of the tree objects below it,
        breadth-first, until ``budget`` bytes were sent (the caller checked ``root``): a client
        listing or downloading a version gets its directories in one request, not one each."""
        frontier = [root]
        sent = 0
        first = True
        while frontier:
            readable = set(frontier) if first else set(frontier) - self.missing(principal, frontier)
            first = False
            below: list[str] = []
            self._prefetch([d for d in frontier if d in readable])
            for digest in frontier:
                if digest not in readable:
                    continue
                data = self.store.get(digest, verify=False)
                yield frame_header(digest, len(data)) + data
                sent += len(data)
                if sent >= budget:
                    return
                if data[:10] == b'{"cairn":"':
                    try:
                        children = self._children(digest, "t")
                    except InvalidInputError:
                        continue  # a blob that looks like a tree: nothing below it
                    below.extend(d for d, kind in children.items() if kind == "t")
            frontier = list(dict.fromkeys(below))

    def _prefetch(self, digests: list[str]) -> None:
        """On a bucket, read these objects (trees, about to be parsed) in a few large GETs
        with read-ahead rather than one request each."""
        if self.remote is not None and len(digests) > 1:
            self.remote.warm(digests)

    # --- binding -------------------------------------------------------------------------------
    def bind_version(self, principal: Principal, project: str, root: str) -> int:
        """Record every object of the version rooted at ``root`` as held by ``project``.
        Returns how many objects were newly bound. Raises ObjectNotFoundError naming objects
        that are missing or not the committer's to use."""
        project_id = self.accounts.project_id(project)
        if project_id is None:  # pragma: no cover - the caller created it
            raise InvalidInputError(f"project {project!r} does not exist")
        # kind of each object to look at: 't' tree/pages, 'c' chunk list, 'b' blob
        frontier: dict[str, str] = {root: "t"}
        to_bind: set[str] = set()
        while frontier:
            held = self.accounts.bound(project_id, frontier)
            todo = {d: k for d, k in frontier.items() if d not in held and d not in to_bind}
            if not todo:
                break
            bad = self.missing(principal, todo, fresh=True)
            if bad:
                raise _missing_error(bad, "of this version are")
            to_bind.update(todo)
            frontier = {}
            self._prefetch([d for d, kind in todo.items() if kind != "b"])
            for digest, kind in todo.items():
                if kind == "b":
                    continue
                frontier.update(self._children(digest, kind))
        self.accounts.bind(project_id, to_bind)
        return len(to_bind)

    def bind_objects(self, principal: Principal, project: str, digests: Iterable[str]) -> None:
        """Bind single objects (a run's code diff) to the project."""
        wanted = set(digests)
        bad = self.missing(principal, wanted, fresh=True)
        if bad:
            raise _missing_error(bad, "are" if len(bad) != 1 else "is")
        project_id = self.accounts.project_id(project)
        if project_id is not None:
            self.accounts.bind(project_id, wanted)

    def _children(self, digest: str, kind: str) -> dict[str, str]:
        data = self.store.get(digest, verify=False)
        out: dict[str, str] = {}
        try:
            if kind == "c":
                for chunk, _n in chunking.decode_chunk_list(data):
                    out[chunk] = "b"
                return out
            doc: dict[str, Any] = tree.parse(data)
            if doc["cairn"] == "pages":
                for page in doc["pages"]:
                    out[page["d"]] = "t"
                return out
            for entry in doc["entries"]:
                if entry["t"] == "d":
                    out[entry["d"]] = "t"
                elif entry["t"] == "f":
                    if entry.get("c"):
                        out[entry["c"]] = "c"
                    else:
                        out[entry["d"]] = "b"
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"object {digest} is not a valid {'chunk list' if kind == 'c' else 'tree'} "
                f"object ({exc}); it cannot be part of a version"
            ) from None
        return out


def _frames(reader: ObjectStore, digests: list[str]) -> Iterator[bytes]:
    parts: list[bytes] = []
    size = 0
    for digest in digests:
        data = reader.get(digest, verify=False)
        parts += (frame_header(digest, len(data)), data)
        size += len(data)
        if size >= STREAM_BLOCK:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _open_bucket(url: str, endpoint: str | None, cache_dir: Path | None) -> PackedRemoteObjectDB:
    from cairn.storage import open_storage

    try:
        return PackedRemoteObjectDB(open_storage(url, endpoint=endpoint), cache_dir)
    except CairnError as exc:
        raise StoreError(f"cannot open the object store {url}: {exc}") from None


__all__ = ["ServerObjects", "Upload", "UploadPack"]
