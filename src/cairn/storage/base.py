"""The storage interface every backend implements.

Keys are '/'-separated strings such as ``objects/ab/cdef...``. Contracts:

- ``put`` is atomic (readers see the whole value or nothing) and idempotent: writing a key
  that exists is a no-op that returns False, so content-addressed writers never clobber.
- ``get``/``open``/``size`` raise ``ObjectNotFoundError`` for a missing key. A key is only
  ever a whole key: ``a`` does not exist just because ``a/b`` does.
- ``missing`` answers for many keys at once (one round trip where the backend allows).
- ``delete`` of a missing key is a no-op.
- ``list(prefix)`` yields every key that starts with ``prefix`` (a plain string prefix, not
  only a folder), each once, in lexicographic order.
- ``sync`` makes every completed ``put`` durable; callers invoke it before they publish a
  record that refers to the written keys.

Optional capabilities (look them up with ``getattr``; not every backend has them):

- ``signed_url(key, method="GET", expires=3600) -> str``: a URL that lets whoever holds it
  GET (or PUT) one key directly at the service, without credentials, for ``expires`` seconds.
  The object storage backends (S3, GCS, Azure) have it; the server's direct-transfer mode uses
  it to send clients to the bucket instead of streaming bytes through itself.
- ``get_range(key, offset, length) -> bytes``: part of a value in one request (object
  storage), used to read objects out of packs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


class Storage(Protocol):
    url: str

    def exists(self, key: str) -> bool: ...

    def missing(self, keys: Iterable[str]) -> set[str]: ...

    def put(self, key: str, data: bytes | memoryview) -> bool: ...

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        """Store ``length`` bytes of open file ``fd`` from ``offset`` (the caller has hashed
        them). Local disk copies inside the kernel; other backends read and ``put``."""
        ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def sync(self) -> None: ...

    def local_path(self, key: str) -> Path | None:
        """The file holding the key when the backend is a local disk (for hard links)."""
        ...


def open_storage(url: str, *, endpoint: str | None = None) -> Storage:
    """A backend for ``url``: a plain path or ``file://`` (local disk), ``memory://``,
    ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``az://container/prefix`` (object
    storage, needs ``pip install 'cairn[s3]'``). ``endpoint`` points S3 (or GCS, Azure) at a
    compatible service or an emulator, like ``AWS_ENDPOINT_URL``."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("s3", "gs", "az"):
        from cairn.storage.cloud import CloudStorage

        if endpoint:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}endpoint={endpoint}"
        return CloudStorage(url)
    if url.startswith("memory://"):
        from cairn.storage.memory import MemoryStorage

        return MemoryStorage(url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" in url:
        from cairn.errors import StoreError

        scheme = url.split("://", 1)[0]
        raise StoreError(f"storage scheme {scheme!r} is not supported yet; use a local folder path")
    from cairn.storage.local import LocalStorage

    return LocalStorage(Path(url))
