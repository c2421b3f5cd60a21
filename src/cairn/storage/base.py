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

- ``get_range(key, offset, length)`` returns the bytes there (fewer, or an error, when the
  value ends first); ``iter_bytes`` streams a value front to back; ``list_info`` is ``list``
  with each value's size and last-modified time; ``copy(src, dst)`` copies a value to a key
  nobody else writes (overwriting it). Every backend has them: object storage does each in
  one request (a ranged GET, one streamed GET, the listing, a copy inside the service).

Signing is the one capability not every backend has: ``signer`` is a `Signer` on object
storage (S3, GCS, Azure) and None elsewhere. The server's direct-transfer mode uses it to send
clients to the bucket instead of streaming bytes through itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol


class Signer(Protocol):
    """Short-lived URLs that let whoever holds one GET (or PUT) one key directly at the
    service, without credentials."""

    def signed_urls(self, keys: Sequence[str], method: str, expires: float) -> list[str]:
        """One URL per key for ``method`` (GET or PUT), valid for ``expires`` seconds."""
        ...

    def signed_put_headers(self) -> dict[str, str]:
        """Headers a PUT on a signed URL must carry (Azure needs the blob type)."""
        ...


class Storage(Protocol):
    url: str
    signer: Signer | None

    def exists(self, key: str) -> bool: ...

    def missing(self, keys: Iterable[str]) -> set[str]: ...

    def put(self, key: str, data: bytes | memoryview) -> bool: ...

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        """Store ``length`` bytes of open file ``fd`` from ``offset`` (the caller has hashed
        them). Local disk copies inside the kernel; other backends read and ``put``."""
        ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes of a value from ``offset`` (fewer, or an error, when the
        value ends first)."""
        ...

    def iter_bytes(self, key: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        """A value front to back in pieces of about ``chunk`` bytes."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def list_info(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        """(key, size, last-modified Unix time) of every value ``list(prefix)`` yields."""
        ...

    def copy(self, src: str, dst: str) -> None:
        """Copy a value to ``dst`` (overwritten: callers copy to keys nobody else writes)."""
        ...

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
