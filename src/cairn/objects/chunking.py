"""Content-defined chunking of large files (FastCDC) and the chunk-list object.

A file of at least CHUNK_THRESHOLD bytes is stored as chunks plus a chunk list:
``{"cairn":"chunks","v":1,"size":N,"chunks":[[digest,length],...]}``; a smaller file is one
blob. The parameters are part of the format: changing them changes no stored data, only how
well new data deduplicates against old.
"""

from __future__ import annotations

import json
from typing import Any

from pyfastcdc import FastCDC

CHUNK_THRESHOLD = 4 << 20  # files this large or larger are chunked
MIN_CHUNK = 128 << 10
AVG_CHUNK = 512 << 10
MAX_CHUNK = 2 << 20

_chunker = FastCDC(AVG_CHUNK - MIN_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


def chunker() -> FastCDC:
    # FastCDC instances hold no state between calls of cut_buf; each call has its own iterator
    return _chunker


def encode_chunk_list(size: int, chunks: list[tuple[str, int]]) -> bytes:
    doc = {"cairn": "chunks", "v": 1, "size": size, "chunks": [[d, n] for d, n in chunks]}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_chunk_list(data: bytes) -> list[tuple[str, int]]:
    doc: dict[str, Any] = json.loads(data)
    if doc.get("cairn") != "chunks":
        raise ValueError("not a chunk list object")
    return [(d, int(n)) for d, n in doc["chunks"]]
