"""Digests name their algorithm: ``blake3:<64 hex digits>``."""

from __future__ import annotations

import re

import blake3

ALGORITHM = "blake3"
_DIGEST_RE = re.compile(r"blake3:[0-9a-f]{64}")
# blake3 hashes large buffers on several threads; below this size threading costs more than it saves
_THREADED_MIN = 1 << 20


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Digest of an in-memory buffer."""
    threads = blake3.blake3.AUTO if len(data) >= _THREADED_MIN else 1
    return ALGORITHM + ":" + blake3.blake3(data, max_threads=threads).hexdigest()


def new_hasher(threaded: bool = False) -> blake3.blake3:
    return blake3.blake3(max_threads=blake3.blake3.AUTO if threaded else 1)


def format_digest(hexdigest: str) -> str:
    return ALGORITHM + ":" + hexdigest


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(value))


def check_digest(value: str) -> str:
    """Return ``value`` if it is a well-formed digest, else raise ValueError."""
    if not is_digest(value):
        raise ValueError(f"not a Cairn digest (expected 'blake3:<64 hex>'): {value!r}")
    return value


def hex_part(digest: str) -> str:
    return digest.partition(":")[2]


def short(digest: str, n: int = 12) -> str:
    return hex_part(digest)[:n]
