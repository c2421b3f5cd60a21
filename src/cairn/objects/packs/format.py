"""What a pack store writes, named once: the keys of packs and their index objects on a bucket,
the index object's format, and the shapes the pack stores and gc share.

Layout of a bucket pack store under its URL (see docs/architecture.md, "Object storage")::

    packs/<id>.pack   objects back to back (one PUT)
    index/<id>.idx    one JSON header line, then one 48-byte record per object:
                      32-byte BLAKE3 digest, 8-byte offset, 8-byte length (little-endian)
    uploads/<owner>/<slot>.pack
                      a pack a client uploaded on a signed URL, until the server adopts it

A local pack store keeps ``packs/<ab>/<id>.pack`` files and one SQLite ``index.db`` (see
`cairn.objects.packs.index`); packs being written live under ``tmp/`` until sealed.

Every pack Cairn writes ends with a **footer**, so that a pack describes itself (as restic's
packs do) and an index can be rebuilt from the packs alone (`cairn check --rebuild-index`), or
a pack nobody indexed (a crashed log, a gc killed half-way) indexed again::

    <objects back to back> <index> <8-byte little-endian length of index> b"cairnpk1"

where ``<index>`` is the index object's format above (its ``size`` is the size of the
objects, i.e. where the footer starts). Packs uploaded by clients on signed URLs have no
footer; their index object is the only record of what they hold.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

Location = tuple[str, int, int]  # pack, offset, length
Row = tuple[str, str, int, int]  # digest, pack, offset, length
Entry = tuple[str, int, int]  # digest, offset, length: one object of a pack's index

_RECORD = struct.Struct("<32sQQ")
_ALGORITHM = "blake3"


def pack_key(pack: str) -> str:
    return f"packs/{pack}.pack"


def index_key(pack: str) -> str:
    return f"index/{pack}.idx"


def upload_key(owner: str, slot: str) -> str:
    """Where a client uploads a pack for the server to adopt (see docs/server.md)."""
    return f"uploads/{owner}/{slot}.pack"


def encode_index(pack: str, size: int, entries: list[Entry]) -> bytes:
    header = {
        "cairn": "packindex",
        "v": 1,
        "pack": pack,
        "algorithm": _ALGORITHM,
        "count": len(entries),
        "size": size,
    }
    out = bytearray(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for digest, offset, length in entries:
        out += _RECORD.pack(bytes.fromhex(digest.partition(":")[2]), offset, length)
    return bytes(out)


FOOTER_MAGIC = b"cairnpk1"
_TAIL = struct.Struct("<Q8s")


def encode_footer(pack: str, size: int, entries: list[Entry]) -> bytes:
    """The footer of a pack whose objects take ``size`` bytes (see the module doc)."""
    index = encode_index(pack, size, entries)
    return index + _TAIL.pack(len(index), FOOTER_MAGIC)


def read_footer(
    read: Callable[[int, int], bytes], size: int
) -> tuple[str, int, list[Entry]] | None:
    """The (pack, size of the objects, entries) a pack's footer lists, reading through
    ``read(offset, length)`` a pack of ``size`` bytes; None when it has no footer (or a
    damaged one)."""
    if size < _TAIL.size:
        return None
    length, magic = _TAIL.unpack(read(size - _TAIL.size, _TAIL.size))
    if magic != FOOTER_MAGIC or length > size - _TAIL.size:
        return None
    try:
        pack, data_size, entries = decode_index(read(size - _TAIL.size - length, length))
    except (ValueError, KeyError, TypeError):
        return None
    if data_size != size - _TAIL.size - length:
        return None
    if any(off < 0 or n < 0 or off + n > data_size for _, off, n in entries):
        return None
    return pack, data_size, entries


def decode_index(data: bytes) -> tuple[str, int, list[Entry]]:
    """(pack, size, entries) of an index object; ValueError or KeyError when it is damaged."""
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    if header.get("cairn") != "packindex" or header.get("v") != 1:
        raise ValueError("not a Cairn pack index")
    prefix = header["algorithm"] + ":"
    entries = [
        (prefix + raw.hex(), offset, length) for raw, offset, length in _RECORD.iter_unpack(body)
    ]
    if len(entries) != header["count"]:
        raise ValueError("pack index is truncated")
    return header["pack"], int(header["size"]), entries


__all__ = [
    "FOOTER_MAGIC",
    "Entry",
    "Location",
    "Row",
    "decode_index",
    "encode_footer",
    "encode_index",
    "index_key",
    "pack_key",
    "read_footer",
    "upload_key",
]
