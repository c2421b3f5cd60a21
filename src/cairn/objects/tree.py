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

import bisect
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import blake3

from cairn.core.digest import hash_bytes
from cairn.core.names import check_path
from cairn.errors import InvalidPathError

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


def _subtrees(entries: list[dict[str, Any]]) -> list[str]:
    return [e["d"] for e in entries if e["t"] == "d"]


def _paginate(
    items: list[tuple[str, dict[str, Any]]],
    put: Callable[[bytes], str],
    children: dict[str, list[str]],
) -> tuple[bytes, list[str]]:
    """Split (name, entry-json) pairs into pages; return the top object and the tree objects it
    points to. Every page written is recorded in ``children`` with the objects it points to
    (a page of entries: its subdirectories; an index page: its pages)."""
    if len(items) <= MAX_ENTRIES:
        entries = [e for _, e in items]
        return encode({"cairn": "tree", "v": 1, "entries": entries}), _subtrees(entries)
    level: list[tuple[str, dict[str, Any]]] = items
    kind = "tree"
    while True:
        pages: list[tuple[str, dict[str, Any]]] = []
        start = 0
        for i, (name, _) in enumerate(level):
            n = i - start + 1
            if (n >= MIN_PAGE and _is_boundary(name)) or n >= MAX_ENTRIES or i == len(level) - 1:
                chunk = [e for _, e in level[start : i + 1]]
                if kind == "tree":
                    body = encode({"cairn": "tree", "v": 1, "entries": chunk})
                    refs, count = _subtrees(chunk), len(chunk)
                else:
                    body = encode({"cairn": "pages", "v": 1, "pages": chunk})
                    refs, count = [p["d"] for p in chunk], sum(p["k"] for p in chunk)
                digest = put(body)
                children[digest] = refs
                first = level[start][0]
                pages.append((first, {"first": first, "d": digest, "k": count}))
                start = i + 1
        if len(pages) <= MAX_ENTRIES:
            top = encode({"cairn": "pages", "v": 1, "pages": [e for _, e in pages]})
            return top, [p["d"] for _, p in pages]
        level, kind = pages, "pages"


def build(entries: list[FileEntry]) -> BuiltTree:
    """Build the tree objects for a flat list of file entries. Raises InvalidPathError for an
    invalid path, two entries at one path, or a path that is both a file and a folder."""
    root = _Dir()
    for entry in entries:
        if check_path(entry.path) != entry.path:
            raise InvalidPathError(f"artifact path {entry.path!r} is not in normal form ('a/b')")
        node = root
        *parents, leaf = entry.path.split("/")
        for i, part in enumerate(parents):
            if part in node.files:
                raise InvalidPathError(
                    f"{entry.path!r} would put a file inside {'/'.join(parents[: i + 1])!r}, "
                    "which is a file"
                )
            node = node.dirs.setdefault(part, _Dir())
        if leaf in node.dirs:
            raise InvalidPathError(f"{entry.path!r} is both a file and a folder")
        if leaf in node.files:
            raise InvalidPathError(f"two files at one path: {entry.path!r}")
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
        total_size = 0
        total_count = 0
        for name, sub in node.dirs.items():
            digest, size, count = visit(sub)
            items.append((name, {"n": name, "t": "d", "d": digest, "s": size, "k": count}))
            total_size += size
            total_count += count
        for name, f in node.files.items():
            items.append((name, f.to_json(name)))
            total_size += f.size
            total_count += 1
        items.sort(key=lambda item: item[0])
        body, refs = _paginate(items, put, children)
        digest = put(body)
        # the top object of a paginated directory points to its pages, they to subdirectories
        children[digest] = refs
        files[digest] = list(node.files.values())
        return digest, total_size, total_count

    digest, size, count = visit(root)
    return BuiltTree(digest, size, count, objects, children, files)


def parse(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    if doc.get("cairn") not in ("tree", "pages"):
        raise ValueError("not a tree object")
    return doc


def _iter_dir(digest: str, load: Callable[[str], bytes]) -> Iterator[dict[str, Any]]:
    """The direct entries of one directory object in name order, one page loaded at a time."""
    doc = parse(load(digest))
    if doc["cairn"] == "pages":
        for page in doc["pages"]:
            yield from _iter_dir(page["d"], load)
        return
    yield from doc["entries"]


def _in_path_order(entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Entries given in name order, re-ordered so that each directory comes where its paths
    sort: 'a/x' sorts after 'a-b' and 'a.txt' but before 'a0'. Holds back only directories."""
    held: list[tuple[str, int, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        name = entry["n"]
        while held and held[0][0] < name:
            yield heapq.heappop(held)[2]
        if entry["t"] == "d":
            heapq.heappush(held, (name + "/", i, entry))
        else:
            yield entry
    while held:
        yield heapq.heappop(held)[2]


def iter_entries(
    digest: str, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (path, entry-json) for every entry below the object, depth first, in path order
    (the files come out as ``sorted()`` of their paths). Directory entries are yielded too,
    just before their contents."""
    for entry in _in_path_order(_iter_dir(digest, load)):
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
    """The direct entries of one directory object (pages joined), in name order."""
    return list(_iter_dir(digest, load))


def _find(digest: str, name: str, load: Callable[[str], bytes]) -> dict[str, Any] | None:
    """The entry called ``name`` in one directory, loading only the page that can hold it."""
    doc = parse(load(digest))
    while doc["cairn"] == "pages":
        pages = doc["pages"]
        i = bisect.bisect_right([p["first"] for p in pages], name) - 1
        if i < 0:
            return None
        doc = parse(load(pages[i]["d"]))
    return next((e for e in doc["entries"] if e["n"] == name), None)


def lookup(digest: str, path: str, load: Callable[[str], bytes]) -> dict[str, Any] | None:
    """The entry at ``path`` (file or directory), or None."""
    parts = path.split("/")
    current = digest
    for i, part in enumerate(parts):
        match = _find(current, part, load)
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


def _entries_except(
    doc: dict[str, Any], load: Callable[[str], bytes], skip: set[str]
) -> dict[str, dict[str, Any]]:
    """The entries of a directory object by name, leaving out the pages in ``skip``."""
    if doc["cairn"] == "tree":
        return {e["n"]: e for e in doc["entries"]}
    out: dict[str, dict[str, Any]] = {}
    for page in doc["pages"]:
        if page["d"] not in skip:
            out.update(_entries_except(parse(load(page["d"])), load, skip))
    return out


def diff(
    old: str | None, new: str | None, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[Change]:
    """Files added, removed and modified between two trees, in path order; identical subtrees
    (and identical pages of wide directories) are skipped without being read."""
    if old == new:
        return
    old_doc = parse(load(old)) if old else None
    new_doc = parse(load(new)) if new else None
    shared: set[str] = set()
    if old_doc and new_doc and old_doc["cairn"] == new_doc["cairn"] == "pages":
        # a page found on both sides lists the same entries on both: none of them changed
        shared = {p["d"] for p in old_doc["pages"]} & {p["d"] for p in new_doc["pages"]}
    old_entries = _entries_except(old_doc, load, shared) if old_doc else {}
    new_entries = _entries_except(new_doc, load, shared) if new_doc else {}
    todo: list[tuple[str, str]] = []  # (sort key, name); a folder's key is 'name/'
    for name in old_entries.keys() | new_entries.keys():
        a = old_entries.get(name)
        b = new_entries.get(name)
        if a and b and a["d"] == b["d"] and a["t"] == b["t"] and a.get("s") == b.get("s"):
            continue
        if (a and a["t"] != "d") or (b and b["t"] != "d"):
            todo.append((name, name))
        if (a and a["t"] == "d") or (b and b["t"] == "d"):
            todo.append((name + "/", name))
    for key, name in sorted(todo):
        a = old_entries.get(name)
        b = new_entries.get(name)
        path = prefix + name
        if key.endswith("/"):
            yield from diff(
                a["d"] if a and a["t"] == "d" else None,
                b["d"] if b and b["t"] == "d" else None,
                load,
                path + "/",
            )
            continue
        a_file = a if a and a["t"] != "d" else None
        b_file = b if b and b["t"] != "d" else None
        if a_file and b_file:
            yield Change(path, "modified", a_file, b_file)
        elif a_file:
            yield Change(path, "removed", a_file, None)
        else:
            yield Change(path, "added", None, b_file)
