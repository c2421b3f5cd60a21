"""`KeyedObjectStore`: one storage key per object."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from cairn.core.digest import hash_bytes
from cairn.core.fileio import pwrite_all
from cairn.errors import IntegrityError
from cairn.objects.store import key_digest, object_key
from cairn.storage.base import Storage


class KeyedObjectStore:
    """An `ObjectStore` with one storage key per object (``objects/blake3/ab/cdef…``): for
    tests and benchmarks (Cairn itself stores objects in packs, `cairn.objects.packs`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def has(self, digest: str) -> bool:
        return self.storage.exists(object_key(digest))

    def missing(self, digests: Iterable[str]) -> set[str]:
        keys = {object_key(d): d for d in digests}
        return {keys[k] for k in self.storage.missing(keys)}

    def put(self, digest: str, data: bytes | memoryview) -> bool:
        """Store ``data`` under its (already computed) digest. True when bytes were written."""
        return self.storage.put(object_key(digest), data)

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]:
        return [self.put(digest, data) for digest, data in items]

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool:
        """Store bytes of an open file under their (already computed) digest."""
        return self.storage.put_range(object_key(digest), fd, offset, length)

    def add(self, data: bytes) -> str:
        digest = hash_bytes(data)
        self.put(digest, data)
        return digest

    def get(self, digest: str, verify: bool = True) -> bytes:
        data = self.storage.get(object_key(digest))
        if verify and hash_bytes(data) != digest:
            raise IntegrityError(
                f"stored object {digest} is corrupt (its bytes hash differently); "
                "run `cairn verify` and re-log the data that produced it",
                digest=digest,
            )
        return data

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        data = self.get(digest, verify=False)
        return pwrite_all(out_fd, data, out_offset)

    def open(self, digest: str) -> BinaryIO:
        return self.storage.open(object_key(digest))

    def local_path(self, digest: str) -> Path | None:
        return self.storage.local_path(object_key(digest))

    def delete(self, digest: str) -> None:
        self.storage.delete(object_key(digest))

    def all_digests(self) -> Iterable[str]:
        for key in self.storage.list("objects/"):
            yield key_digest(key)

    def sync(self) -> None:
        self.storage.sync()

    def warm(self, digests: list[str]) -> None:
        pass  # one key per object: nothing to look up ahead

    def discard(self) -> None:
        pass  # every put is complete at once

    def generation(self) -> int | None:
        return None

    def close(self) -> None:
        self.storage.sync()


__all__ = ["KeyedObjectStore"]
