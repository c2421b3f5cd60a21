"""A whole version, or one folder of it, downloaded as one tar archive streamed from the store.

Nothing is built in memory or on disk: `tar_stream` walks the tree lazily (one folder page at
a time, `cairn.objects.tree.files_below`) and, for each file, yields its tar header and then its
content one stored object at a time (a chunk of a large file, at most 2 MiB; a small file's
blob, under 4 MiB), each read through the object store and verified against its digest, then
the padding to the next 512-byte block. At any moment the server holds one object.

The archive is a POSIX (pax) tar: member names are the files' paths in the version (a folder's
files keep their folder), so unpacking it lays the files out as `cairn artifact get` does; long
and non-ASCII names are exact. Every member has the version's creation time and mode 0644, so
the same version always gives the same bytes. References (data that stays at its URI) are not
stored, so they are not in the archive.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import posixpath
import tarfile
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

from fastapi.responses import Response
from starlette.responses import StreamingResponse

from cairn.dashboard import browse
from cairn.dashboard.context import C, Pages
from cairn.dashboard.pages.versions import version_of
from cairn.errors import ArtifactNotFoundError, StoreError
from cairn.objects import tree
from cairn.objects.store import ObjectStore

BLOCK = tarfile.BLOCKSIZE  # 512
END = b"\0" * (2 * BLOCK)  # two empty blocks end a tar archive

pages = Pages()


def tar_header(path: str, size: int, mtime: datetime) -> bytes:
    info = tarfile.TarInfo(path)
    info.size = size
    info.mtime = int(mtime.timestamp())
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def tar_stream(
    object_store: ObjectStore, root: str, path: str | None, mtime: datetime
) -> Iterator[bytes]:
    """The tar archive of the files at or below ``path`` of the tree ``root`` (everything when
    None), one header or one object at a time."""

    def load(digest: str) -> bytes:
        return object_store.get(digest)

    for name, leaf in tree.files_below(root, path, load):
        if not isinstance(leaf, tree.File):
            continue  # a reference: its data is not in the store
        yield tar_header(name, leaf.size, mtime)
        sent = 0
        for part in browse.iter_content(object_store, leaf):
            sent += len(part)
            yield part
        if sent != leaf.size:
            raise StoreError(f"{name}: the store gave {sent} bytes of a {leaf.size}-byte file")
        if leaf.size % BLOCK:
            yield b"\0" * (BLOCK - leaf.size % BLOCK)
    yield END


@pages.get("/p/{project}/a/{name}/v/{ref}/archive")
def archive(ctx: C, project: str, name: str, ref: str, path: str = "") -> Response:
    """``path``: a folder (or file) of the version; the whole version when empty."""
    path = path.strip("/")
    info = version_of(ctx, project, name, ref, "/archive")
    if path:
        entry = tree.lookup(info.digest, path, ctx.load)
        if entry is None:
            raise ArtifactNotFoundError(f"{info.qualified_name} has no file or folder {path!r}")
    stem = f"{info.name}-v{info.version}"
    if path:
        stem += "-" + posixpath.basename(path)
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem + '.tar')}",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(
        tar_stream(ctx.object_store, info.digest, path or None, info.created_at),
        media_type="application/x-tar",
        headers=headers,
    )
