"""Adopting a pack a client uploaded to a bucket on a signed URL (the server's direct mode):
copy it to a key nobody else can write, hash every object it lists, and index it only if
all match."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

from cairn.core.digest import format_digest, new_hasher
from cairn.errors import IntegrityError, InvalidInputError
from cairn.objects.packs.bucket import BucketPackStore
from cairn.objects.packs.format import Entry, pack_key
from cairn.storage.base import Storage


def adopt(store: BucketPackStore, staged: str, entries: list[Entry]) -> tuple[int, int]:
    """Make a pack a client uploaded to the key ``staged`` part of ``store``, once every
    object ``entries`` lists in it (digest, offset, length) hashes to its digest.

    The staged bytes are first copied (inside the service) to a new pack key nobody else
    can write, and that copy is what gets verified and indexed: whoever uploaded to
    ``staged`` cannot change the bytes afterwards. Only objects the store lacked count as
    stored; a pack holding none is removed. A bad entry raises (IntegrityError,
    InvalidInputError) and leaves nothing. ``staged`` is deleted either way.
    Returns (objects stored, their bytes)."""
    storage = store.storage
    new: dict[str, Entry] = {}
    try:
        size = storage.size(staged)
        ordered = _check_entries(entries, size)
        pack = uuid.uuid4().hex
        key = pack_key(pack)
        storage.copy(staged, key)
        try:
            if storage.size(key) != size:  # re-uploaded between the check and the copy
                raise InvalidInputError(
                    f"the pack uploaded to {staged} changed while it was being committed; "
                    "upload it again on a new URL"
                )
            _verify(storage, key, ordered)
            lacking = store.missing(d for d, _, _ in ordered)
            listed: dict[str, Entry] = {}
            for digest, offset, length in ordered:
                listed.setdefault(digest, (digest, offset, length))
                if digest in lacking and digest not in new:
                    new[digest] = (digest, offset, length)
            if new:
                # the index lists every object in the pack, also those stored before, so
                # that whoever decides who may read the pack sees all it holds
                store.publish(pack, size, list(listed.values()))
            else:
                storage.delete(key)
        except BaseException:
            _quietly(storage.delete, key)
            raise
    finally:
        _quietly(storage.delete, staged)
    return len(new), sum(n for _, _, n in new.values())


def _check_entries(entries: list[Entry], size: int) -> list[Entry]:
    """The entries by offset, each inside the pack and none overlapping another."""
    ordered = sorted(entries, key=lambda e: (e[1], e[2]))
    end = 0
    for digest, offset, length in ordered:
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidInputError(
                f"object {digest} at {offset}+{length} lies outside the uploaded pack "
                f"({size} bytes); nothing of it was stored"
            )
        if offset < end:
            raise InvalidInputError(
                f"object {digest} at {offset} overlaps the object before it in the uploaded "
                "pack; nothing of it was stored"
            )
        end = offset + length
    return ordered


def _verify(storage: Storage, key: str, ordered: list[Entry]) -> None:
    """Read the pack once, front to back, hashing each listed object (memory stays small)."""
    pieces: Iterator[bytes] = storage.iter_bytes(key)
    buf = memoryview(b"")
    pos = 0  # offset in the pack of buf[0]
    for digest, offset, length in ordered:
        hasher = new_hasher(threaded=length >= (1 << 20))
        at, left = offset, length
        while left:
            if pos + len(buf) <= at:  # the bytes wanted start past this piece
                pos += len(buf)
                piece = next(pieces, None)
                if piece is None:
                    raise IntegrityError(
                        f"the uploaded pack ended inside object {digest}; nothing of it was stored",
                        digest=digest,
                    )
                buf = memoryview(piece)
                continue
            part = buf[at - pos : at - pos + left]
            hasher.update(part)
            at += len(part)
            left -= len(part)
        found = format_digest(hasher.hexdigest())
        if found != digest:
            raise IntegrityError(
                f"the uploaded bytes of object {digest} hash to {found}: the pack does not "
                "hold what its entries say; nothing of it was stored, upload it again",
                digest=digest,
            )


def _quietly(action: Callable[[str], object], key: str) -> None:
    try:
        action(key)
    except Exception:
        pass  # garbage at worst: gc removes it


__all__ = ["adopt"]
