"""The object store: content-addressed bytes named by their digest.

`ObjectStore` is the one contract every implementation keeps (tests/objects/
test_store_conformance.py runs it on each):

- ``put(digest, data)`` stores bytes the caller has hashed. Objects are written once and never
  changed: a put of an object the store holds leaves the stored bytes as they are (the first
  copy wins). ``put`` does not look the object up (callers ask ``missing`` first): True means
  bytes were written (or sent), False that this store knew the object already.
- Nothing put is durable, or visible to another process, before ``sync`` returns.
- ``get(digest)`` returns the object's bytes, checked against the digest (``verify=False``
  skips the check when the caller hashes what it reads): wrong bytes raise IntegrityError,
  an unknown digest ObjectNotFoundError. ``read_into`` copies an object into a file
  (unchecked; the caller hashes what it wrote).
- ``missing(digests)`` answers for many at once: the digests the store does not hold.
- ``warm(digests)`` prepares reading many objects (one lookup, a prefetch); ``generation``
  counts drops where the store can (see there).
- ``delete(digest)`` forgets an object (its bytes may stay in a pack until gc rewrites it);
  ``all_digests`` lists every object. A store on the far side of a server offers neither
  (StoreError): gc runs where the store is.

Implementations: `cairn.objects.packs.local.LocalPackStore` (pack files and ``index.db``),
`cairn.objects.packs.bucket.BucketPackStore` (packs on object storage),
`cairn.client.objects.HttpObjectStore` (a Cairn server), and
`cairn.objects.keyed.KeyedObjectStore` (one storage key per object: tests, benchmarks).
`open_object_store` opens the right pack store for a store URL: the one rule the SDK, the
server and gc share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cairn.errors import CairnError, ObjectNotFoundError, StoreError

if TYPE_CHECKING:
    from cairn.objects.packs import PackStore

BUCKET_SCHEMES = ("s3", "gs", "az")


def object_key(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"objects/{algorithm}/{hexdigest[:2]}/{hexdigest[2:]}"


def key_digest(key: str) -> str:
    _, algorithm, prefix, rest = key.split("/")
    return f"{algorithm}:{prefix}{rest}"


class ObjectStore(Protocol):
    """What ingest, download and the SDK need from an object store (see the module doc)."""

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> set[str]: ...

    def put(self, digest: str, data: bytes | memoryview) -> bool: ...

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]: ...

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool: ...

    def add(self, data: bytes) -> str: ...

    def get(self, digest: str, verify: bool = True) -> bytes: ...

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int: ...

    def delete(self, digest: str) -> None: ...

    def all_digests(self) -> Iterable[str]: ...

    def sync(self) -> None: ...

    def warm(self, digests: list[str]) -> None:
        """Look many objects up (or fetch them) at once ahead of reading them: downloads."""
        ...

    def discard(self) -> None:
        """Throw away what was put since the last sync and not yet sent or made durable (a
        log that failed): nothing of it is indexed later."""
        ...

    def generation(self) -> int | None:
        """How many times objects were dropped from this store (gc, or a log forgetting its
        own trees); None when the store does not count (then a logger checks everything
        again before it commits). Unchanged means nothing found before has gone since."""
        ...

    def close(self) -> None: ...


def is_bucket_url(url: str) -> bool:
    return url.split("://", 1)[0] in BUCKET_SCHEMES if "://" in url else False


def open_object_store(
    url: str | Path,
    *,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    must_exist: bool = False,
) -> PackStore:
    """The pack store at ``url``: a folder (a path or ``file://``) is a `LocalPackStore`; a
    bucket (``s3://bucket/prefix``, ``gs://…``, ``az://…``) a `BucketPackStore` whose index
    cache lives under ``cache_dir`` (memory when None); ``memory://`` a bucket store in this
    process (tests). ``endpoint`` points a bucket at an S3-compatible service or an emulator.
    ``must_exist``: refuse a folder that holds no store yet (gc, check)."""
    text = str(url)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme in BUCKET_SCHEMES or scheme == "memory":
        from cairn.objects.packs.bucket import BucketPackStore
        from cairn.storage import open_storage

        try:
            return BucketPackStore(open_storage(text, endpoint=endpoint), cache_dir)
        except CairnError as exc:
            raise StoreError(f"cannot open the object store {text}: {exc}") from None
    if scheme and scheme != "file":
        raise StoreError(
            f"store {text!r}: use a folder, or a bucket as s3://bucket/prefix, "
            "gs://bucket/prefix or az://container/prefix"
        )
    if endpoint:
        raise StoreError(f"an endpoint needs a bucket store (s3://bucket/prefix), not {text}")
    from cairn.objects.packs.local import LocalPackStore

    folder = Path(text.removeprefix("file://")).expanduser().absolute()
    if must_exist and not (folder / "index.db").exists():
        raise StoreError(f"no Cairn store at {folder} (no index.db)")
    return LocalPackStore(folder)


__all__ = [
    "ObjectNotFoundError",
    "ObjectStore",
    "is_bucket_url",
    "object_key",
    "open_object_store",
]
