"""Reading a version's files for the browser: one page of a folder, the first bytes of a file,
previews, and streaming a whole file.

Nothing here loads a whole version or a whole large folder: a folder of a million entries is a
page index (see cairn.objects.tree), so a page of it loads the index and the one or two pages
that hold the entries asked for. A preview reads the file's first object only (a blob is at
most 4 MiB; a chunked file's first chunk at most 2 MiB).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import mimetypes
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cairn.dashboard import previews
from cairn.objects import chunking, tree
from cairn.objects.store import ObjectStore

Load = Callable[[str], bytes]

PREVIEW_BYTES = 256 << 10  # text shown at most
CSV_ROWS = 100
WHOLE_LIMIT = 1 << 20  # JSON and Markdown are rendered when the file is at most this large
STREAM_BLOCK = 1 << 20


@dataclass
class DirPage:
    entries: list[tree.Entry]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.entries) < self.total


def _collect(node: tree.Node, skip: int, want: int, load: Load, out: list[tree.Entry]) -> None:
    if want <= 0:
        return
    if isinstance(node, tree.Listing):
        out.extend(node.entries[skip : skip + want])
        return
    for page in node.pages:
        if skip >= page.count:
            skip -= page.count
            continue
        before = len(out)
        _collect(tree.parse(load(page.digest)), skip, want, load, out)
        want -= len(out) - before
        skip = 0
        if want <= 0:
            return


def dir_page(digest: str, load: Load, offset: int, limit: int) -> DirPage:
    """Entries ``offset .. offset+limit`` of a folder object, in name order, loading only the
    pages that hold them."""
    node = tree.parse(load(digest))
    out: list[tree.Entry] = []
    _collect(node, max(offset, 0), limit, load, out)
    return DirPage(out, node.count, offset, limit)


def seek(digest: str, name: str, load: Load) -> int:
    """The position of the first entry whose name is >= ``name`` (to jump into a huge
    folder), loading one page per level."""
    node = tree.parse(load(digest))
    position = 0
    while isinstance(node, tree.PageIndex):
        pages = node.pages
        i = max(bisect.bisect_right([p.first for p in pages], name) - 1, 0)
        position += sum(p.count for p in pages[:i])
        node = tree.parse(load(pages[i].digest))
    names = [e.name for e in node.entries]
    return position + bisect.bisect_left(names, name)


# --- file contents ---------------------------------------------------------------------------


def read_head(object_store: ObjectStore, entry: tree.Leaf, limit: int) -> bytes:
    """The first ``limit`` bytes of a file (its first object or objects only)."""
    if isinstance(entry, tree.Ref):
        return b""
    if entry.chunks:
        out = bytearray()
        for digest, _ in chunking.decode_chunk_list(object_store.get(entry.chunks)):
            out += object_store.get(digest)
            if len(out) >= limit:
                break
        return bytes(out[:limit])
    return object_store.get(entry.digest)[:limit]


def iter_content(object_store: ObjectStore, entry: tree.File) -> Iterator[bytes]:
    """The whole file, one object (or one MiB of a blob) at a time, each verified."""
    if entry.chunks:
        for digest, _ in chunking.decode_chunk_list(object_store.get(entry.chunks)):
            yield object_store.get(digest)
        return
    data = object_store.get(entry.digest)
    for i in range(0, len(data), STREAM_BLOCK):
        yield data[i : i + STREAM_BLOCK]


# --- previews --------------------------------------------------------------------------------

_TEXT_EXT = {
    ".txt",
    ".log",
    ".py",
    ".pyi",
    ".ipynb",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".conf",
    ".sh",
    ".bash",
    ".xml",
    ".html",
    ".htm",
    ".css",
    ".js",
    ".ts",
    ".sql",
    ".r",
    ".jsonl",
    ".ndjson",
    ".rst",
    ".tex",
    ".c",
    ".h",
    ".cpp",
    ".hpp",
    ".java",
    ".go",
    ".rs",
    ".rb",
    ".jl",
    ".scala",
    ".kt",
    ".swift",
    ".env",
    ".gitignore",
    ".dockerfile",
    ".proto",
    ".srt",
    ".vtt",
    ".diff",
    ".patch",
}
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".ico", ".avif"}
_MD_EXT = {".md", ".markdown", ".mdown"}
SAFE_INLINE = {
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/avif",
    "text/plain",
    "text/csv",
    "application/json",
    "application/pdf",
    *previews.AUDIO.values(),
}


def kind_of(path: str) -> str:
    """How a file is previewed, from its name: csv, tsv, json, markdown, image, text or ''
    (decided by its first bytes)."""
    ext = posixpath.splitext(path.lower())[1]
    if ext == ".csv":
        return "csv"
    if ext in (".tsv", ".tab"):
        return "tsv"
    if ext == ".json":
        return "json"
    if ext in _MD_EXT:
        return "markdown"
    if ext in _IMAGE_EXT:
        return "image"
    if ext in _TEXT_EXT or posixpath.basename(path) in ("Dockerfile", "Makefile", "LICENSE"):
        return "text"
    return ""


def content_type(path: str) -> str:
    ext = posixpath.splitext(path.lower())[1]
    if ext in previews.AUDIO:
        return previews.AUDIO[ext]
    if ext in (".md", ".markdown", ".jsonl", ".ndjson", ".tsv", ".log", ".yaml", ".yml"):
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed == "application/json":
        return guessed + "; charset=utf-8"
    return guessed


def looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is still text
        return exc.start < len(sample) - 4
    return False


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass
class Preview:
    kind: str  # csv | json | markdown | image | text | binary | reference | empty
    text: str = ""
    html: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    truncated: bool = False  # the preview shows only the start of the file
    total_rows: int | None = None  # a table's data rows, when the whole file was read
    note: str = ""
    # parquet | arrow | npy | npz | safetensors: facts, and a table of columns/arrays/tensors
    facts: list[tuple[str, str]] = field(default_factory=list)
    column_header: list[str] = field(default_factory=list)
    columns: list[list[str]] = field(default_factory=list)
    audio_type: str = ""


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def csv_preview(data: bytes, complete: bool, delimiter: str, rows: int = CSV_ROWS) -> Preview:
    text = _decode(data)
    if not complete:
        cut = text.rfind("\n")
        text = text[: cut + 1] if cut >= 0 else text
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    table: list[list[str]] = []
    try:
        for row in reader:
            table.append(row)
            if len(table) > rows + 1:  # the header, the rows shown, and one to know of more
                break
    except csv.Error:
        pass  # a quoted field cut by the end of the bytes read: show the rows before it
    total: int | None = None  # data rows in the whole file, when all of it was read
    if complete:
        try:
            total = max(0, sum(1 for _ in csv.reader(io.StringIO(text), delimiter=delimiter)) - 1)
        except csv.Error:
            total = None
    if not table:
        return Preview("text", text="", note="empty file")
    header, body = table[0], table[1 : rows + 1]
    width = max(len(r) for r in [header, *body])
    header = header + [""] * (width - len(header))
    body = [r + [""] * (width - len(r)) for r in body]
    numeric = [bool(body) and all(_numeric(r[i]) for r in body if r[i] != "") for i in range(width)]
    more = not complete or total is None or total > len(body)
    return Preview(
        "csv", header=header, rows=body, numeric=numeric, truncated=more, total_rows=total
    )


def make_preview(object_store: ObjectStore, path: str, entry: tree.Leaf, render_md: Any) -> Preview:
    """The preview of one file: reads at most its first PREVIEW_BYTES (first object)."""
    if isinstance(entry, tree.Ref):
        return Preview("reference", text=entry.uri)
    size = entry.size
    if size == 0:
        return Preview("empty")
    kind = kind_of(path)
    if kind == "image":
        return Preview("image")
    special = previews.kind_of(path)
    if special == "audio":
        ext = posixpath.splitext(path.lower())[1]
        return Preview("audio", audio_type=previews.AUDIO[ext])
    if special:
        found = previews.rich_preview(object_store, special, entry)
        if "error" in found:
            return Preview("binary", note=found["error"])
        return Preview(
            special,
            header=found["header"],
            rows=found["rows"],
            facts=found["facts"],
            column_header=found["column_header"],
            columns=found["columns"],
            note=found["note"],
        )
    head = read_head(object_store, entry, PREVIEW_BYTES)
    complete = len(head) >= size
    if kind in ("csv", "tsv"):
        return csv_preview(head, complete, "," if kind == "csv" else "\t")
    if not kind and looks_binary(head):
        return Preview("binary")
    if kind == "json" and size <= WHOLE_LIMIT:
        data = head if complete else read_head(object_store, entry, WHOLE_LIMIT)
        try:
            doc = json.loads(data)
        except ValueError:
            return Preview("text", text=_decode(data[:PREVIEW_BYTES]), note="not valid JSON")
        return Preview("json", text=json.dumps(doc, indent=2, ensure_ascii=False))
    if kind == "markdown" and size <= WHOLE_LIMIT:
        data = head if complete else read_head(object_store, entry, WHOLE_LIMIT)
        return Preview("markdown", html=str(render_md(_decode(data))), text=_decode(data))
    return Preview("text", text=_decode(head), truncated=not complete)


__all__ = [
    "DirPage",
    "Preview",
    "content_type",
    "dir_page",
    "iter_content",
    "kind_of",
    "make_preview",
    "read_head",
    "seek",
]
