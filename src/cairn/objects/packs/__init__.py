"""Pack stores: many objects per file (a local folder) or per object (a bucket), found
through an index. Two implementations of one protocol, `PackStore`:

- `cairn.objects.packs.local.LocalPackStore`: pack files and ``index.db`` in a folder (the
  embedded store, a server's folder store, the client's download cache);
- `cairn.objects.packs.bucket.BucketPackStore`: packs and their index objects on object
  storage, with a local index cache.

`PackStore` is what gc (`cairn.objects.gc`) and the server (`cairn.server.objects`) use
directly: an `ObjectStore`, plus the pack operations of a garbage collection and one upload
request written as a whole (`Upload`). The formats are in `cairn.objects.packs.format`, the
SQLite index both keep in `cairn.objects.packs.index`. Open one from a URL with
`cairn.objects.store.open_object_store`.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from cairn.objects.packs.format import Entry, Row
from cairn.objects.store import ObjectStore


class Upload(Protocol):
    """The objects of one server upload request: stored as a whole by ``commit`` (durable
    and indexed), or not at all (``abort`` leaves nothing behind)."""

    def put(self, digest: str, data: bytes | memoryview) -> bool: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class PackStore(ObjectStore, Protocol):
    """An `ObjectStore` whose objects live in packs. The pack operations serve gc: marking and
    the sweep policy are gc's; a pack store lists its packs with size and age, snapshots its
    index, copies live objects to new packs, drops and restores packs' index entries, deletes
    packs, and finds what crashed writers left. A pack's age is its file's mtime or its bucket
    object's last-modified time."""

    url: str
    where: str  # how reports name the store
    default_settle: float  # gc: seconds between dropping index entries and the last root read
    leftover_kind: str  # "tmp": temp packs of crashed writers; "uploads": stale direct uploads

    def warm(self, digests: list[str]) -> None:
        """Look many objects up at once ahead of reading them (downloads, streams)."""
        ...

    def open_upload(self) -> Upload: ...

    def gc_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a gc runs; a second gc on the same store raises StoreError."""
        ...

    def snapshot(self, grace_seconds: float) -> list[Row]:
        """The index rows, taken before the roots are read (an object indexed later is never a
        candidate); for packs older than ``grace_seconds`` every object they hold."""
        ...

    def packs(self) -> dict[str, tuple[int, float]]:
        """Every pack: name -> (size in bytes, modification time)."""
        ...

    def read_at(self, pack: str, offset: int, length: int) -> bytes:
        """Bytes at a known location (of a pack whose rows may be dropped already)."""
        ...

    def flush_moved(self) -> int:
        """Make the objects put since the last sync durable and indexed, replacing the rows
        of the packs they were copied from. Returns the bytes of the packs written."""
        ...

    def drop_packs(self, packs: list[str]) -> None:
        """Remove the packs' index entries (others stop finding their objects)."""
        ...

    def restore_packs(self, packs: list[str], rows: list[Row]) -> None:
        """Index ``rows`` of dropped ``packs`` again (their bytes are still there)."""
        ...

    def delete_pack(self, pack: str) -> bool: ...

    def orphans(
        self, files: dict[str, tuple[int, float]], indexed: set[str], now: float, grace: float
    ) -> list[str]:
        """The packs of ``files`` no index lists (``indexed`` are those the snapshot saw):
        older than ``grace`` seconds, open in no process, and checked against the index once
        more (a pack indexed since the snapshot is not an orphan)."""
        ...

    def pack_entries(self, pack: str) -> list[Entry] | None:
        """The objects a pack's footer lists; None when it has none (or it is damaged)."""
        ...

    def index_pack(self, pack: str, size: int, entries: list[Entry]) -> None:
        """Index a complete pack (of ``size`` bytes) again, as its footer lists it."""
        ...

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        """Unindexed garbage of crashed writers, old enough to remove: (name, size)."""
        ...

    def remove_leftover(self, name: str) -> bool: ...

    def close(self) -> None: ...


__all__ = ["PackStore", "Upload"]
