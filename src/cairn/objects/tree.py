"""Merkle trees of directory objects, like git trees.

A tree object lists one directory's entries, sorted by name::

    {"cairn":"tree","v":1,"entries":[{"n":"a.csv","t":"f","d":"blake3:..","s":12}, ...]}

Entry keys: ``n`` name, ``t`` kind (``f`` file, ``d`` directory, ``r`` reference), ``d`` digest
(file: BLAKE3 of the content; directory: digest of its tree object), ``s`` size in bytes (a
directory: total of its files), ``c`` chunk-list digest (chunked files only), ``k`` file count
(directories only), ``u``/``x`` URI and extra checksum fields (references only).

A directory with more than MAX_ENTRIES entries is split into pages at content-defined
boundaries (so inserting one name changes one page) and stored as a page index::

    {"cairn":"pages","v":1,"pages":[{"first":"name","d":"blake3:..","k":entries}, ...]}

Index objects split the same way when they grow too wide. The artifact digest of a version is
the digest of its root object, so it covers every path, size and content, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import blake3

from cairn.core.digest import hash_bytes

MAX_ENTRIES = 4096
MIN_PAGE = 256
_BOUNDARY_MASK = 1023  # ~1 in 1024 names ends a page


@dataclass(frozen=True)
class FileEntry:
    """A file (or reference) at a path inside an artifact."""

    path: str
    digest: str
    size: int
    chunks: str | None = None  # chunk-list digest for chunked files
    ref: dict[str, Any] | None = None  # for references: {"u": uri, ...}

    def to_json(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "n": name,
            "t": "r" if self.ref else "f",
            "d": self.digest,
            "s": self.size,
        }
        if self.chunks:
            doc["c"] = self.chunks
        if self.ref:
            doc.update(self.ref)
        return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class _Dir:
    files: dict[str, FileEntry] = field(default_factory=dict)
    dirs: dict[str, _Dir] = field(default_factory=dict)


@dataclass
class BuiltTree:
    root: str  # digest of the root object: the artifact digest
    size: int
    file_count: int
    objects: dict[str, bytes]  # every tree/page object, by digest
    children: dict[str, list[str]]  # object digest -> digests of tree objects it points to
    files: dict[str, list[FileEntry]]  # object digest -> file entries it lists directly


def _is_boundary(name: str) -> bool:
    return (int.from_bytes(blake3.blake3(name.encode()).digest(4), "little") & _BOUNDARY_MASK) == 0


def _paginate(
    items: list[tuple[str, dict[str, Any]]], put: Callable[[bytes], str]
) -> tuple[bytes, list[str]]:
    """Split (name, entry-json) pairs into pages; return the top object and its page digests."""
    if len(items) <= MAX_ENTRIES:
        return encode({"cairn": "tree", "v": 1, "entries": [e for _, e in items]}), []
    level: list[tuple[str, dict[str, Any]]] = items
    kind = "tree"
    while True:
        pages: list[tuple[str, dict[str, Any]]] = []
        start = 0
        for i, (name, _) in enumerate(level):
            n = i - start + 1
            if (n >= MIN_PAGE and _is_boundary(name)) or n >= MAX_ENTRIES or i == len(level) - 1:
                chunk = level[start : i + 1]
                if kind == "tree":
                    body = encode({"cairn": "tree", "v": 1, "entries": [e for _, e in chunk]})
                else:
                    body = encode({"cairn": "pages", "v": 1, "pages": [e for _, e in chunk]})
                first = chunk[0][0]
                pages.append((first, {"first": first, "d": put(body), "k": len(chunk)}))
                start = i + 1
        if len(pages) <= MAX_ENTRIES:
            top = encode({"cairn": "pages", "v": 1, "pages": [e for _, e in pages]})
            return top, [p["d"] for _, p in pages]
        level, kind = pages, "pages"


def build(entries: list[FileEntry]) -> BuiltTree:
    """Build the tree objects for a flat list of file entries (paths already validated and
    unique)."""
    root = _Dir()
    for entry in entries:
        node = root
        *parents, leaf = entry.path.split("/")
        for part in parents:
            node = node.dirs.setdefault(part, _Dir())
        node.files[leaf] = entry

    objects: dict[str, bytes] = {}
    children: dict[str, list[str]] = {}
    files: dict[str, list[FileEntry]] = {}

    def put(body: bytes) -> str:
        digest = hash_bytes(body)
        objects[digest] = body
        return digest

    def visit(node: _Dir) -> tuple[str, int, int]:
        items: list[tuple[str, dict[str, Any]]] = []
        subtree_digests: list[str] = []
        total_size = 0
        total_count = 0
        for name, sub in node.dirs.items():
            digest, size, count = visit(sub)
            items.append((name, {"n": name, "t": "d", "d": digest, "s": size, "k": count}))
            subtree_digests.append(digest)
            total_size += size
            total_count += count
        for name, f in node.files.items():
            items.append((name, f.to_json(name)))
            total_size += f.size
            total_count += 1
        items.sort(key=lambda item: item[0])
        body, pages = _paginate(items, put)
        digest = put(body)
        # pages are written before the top object; files and subtrees hang off the top
        children[digest] = subtree_digests + pages
        files[digest] = list(node.files.values())
        return digest, total_size, total_count

    digest, size, count = visit(root)
    return BuiltTree(digest, size, count, objects, children, files)


def parse(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    if doc.get("cairn") not in ("tree", "pages"):
        raise ValueError("not a tree object")
    return doc


def iter_entries(
    digest: str, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (path, entry-json) for every entry below the object, depth first, in path order.
    Directory entries are yielded too (before their contents)."""
    doc = parse(load(digest))
    if doc["cairn"] == "pages":
        for page in doc["pages"]:
            yield from iter_entries(page["d"], load, prefix)
        return
    for entry in doc["entries"]:
        path = prefix + entry["n"]
        yield path, entry
        if entry["t"] == "d":
            yield from iter_entries(entry["d"], load, path + "/")


def iter_files(
    digest: str, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, entry in iter_entries(digest, load, prefix):
        if entry["t"] != "d":
            yield path, entry


def list_dir(digest: str, load: Callable[[str], bytes]) -> list[dict[str, Any]]:
    """The direct entries of one directory object (pages joined)."""
    doc = parse(load(digest))
    if doc["cairn"] == "pages":
        out: list[dict[str, Any]] = []
        for page in doc["pages"]:
            out.extend(list_dir(page["d"], load))
        return out
    entries: list[dict[str, Any]] = doc["entries"]
    return entries


def lookup(digest: str, path: str, load: Callable[[str], bytes]) -> dict[str, Any] | None:
    """The entry at ``path`` (file or directory), or None."""
    parts = path.split("/")
    current = digest
    for i, part in enumerate(parts):
        match = next((e for e in list_dir(current, load) if e["n"] == part), None)
        if match is None:
            return None
        if i == len(parts) - 1:
            return match
        if match["t"] != "d":
            return None
        current = match["d"]
    return None


@dataclass
class Change:
    path: str
    kind: str  # "added" | "removed" | "modified"
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def diff(
    old: str | None, new: str | None, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[Change]:
    """Files added, removed and modified between two trees; identical subtrees are skipped
    without being read."""
    if old == new:
        return
    old_entries = {e["n"]: e for e in list_dir(old, load)} if old else {}
    new_entries = {e["n"]: e for e in list_dir(new, load)} if new else {}
    for name in sorted(old_entries.keys() | new_entries.keys()):
        a = old_entries.get(name)
        b = new_entries.get(name)
        path = prefix + name
        if a and b and a["d"] == b["d"] and a["t"] == b["t"] and a.get("s") == b.get("s"):
            continue
        a_dir = a is not None and a["t"] == "d"
        b_dir = b is not None and b["t"] == "d"
        if a_dir or b_dir:
            yield from diff(
                a["d"] if a_dir and a else None, b["d"] if b_dir and b else None, load, path + "/"
            )
            if a and not a_dir:
                yield Change(path, "removed", a, None)
            if b and not b_dir:
                yield Change(path, "added", None, b)
        elif a and b:
            yield Change(path, "modified", a, b)
        elif a:
            yield Change(path, "removed", a, None)
        else:
            yield Change(path, "added", None, b)
