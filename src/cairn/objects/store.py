"""The object database: content-addressed bytes named by their digest.

An object with digest ``blake3:abcd...`` lives at key ``objects/blake3/ab/cd...``. Objects are
written once and never changed; writing one that exists stores nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError
from cairn.storage.base import Storage


def object_key(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"objects/{algorithm}/{hexdigest[:2]}/{hexdigest[2:]}"


def key_digest(key: str) -> str:
    _, algorithm, prefix, rest = key.split("/")
    return f"{algorithm}:{prefix}{rest}"


class ObjectStore(Protocol):
    """What ingest, download and the SDK need from an object database."""

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> set[str]: ...

    def put(self, digest: str, data: bytes | memoryview) -> bool: ...

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool: ...

    def add(self, data: bytes) -> str: ...

    def get(self, digest: str, verify: bool = True) -> bytes: ...

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int: ...

    def delete(self, digest: str) -> None: ...

    def all_digests(self) -> Iterable[str]: ...

    def sync(self) -> None: ...


class ObjectDB:
    """One storage key per object: for object storage and tests (the local embedded store
    uses `PackedObjectDB`)."""

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
        view = memoryview(data)
        while view:
            n = os.pwrite(out_fd, view, out_offset)
            view = view[n:]
            out_offset += n
        return len(data)

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


__all__ = ["ObjectDB", "ObjectNotFoundError", "object_key"]
