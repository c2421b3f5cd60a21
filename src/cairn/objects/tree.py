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
from typing import Any, Literal

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

    @classmethod
    def of(cls, path: str, leaf: Leaf) -> FileEntry:
        """The entry that puts a stored file (or reference) at ``path`` in a new version."""
        if isinstance(leaf, Ref):
            return cls(path, leaf.digest, leaf.size, ref={"u": leaf.uri, "x": leaf.fields})
        return cls(path, leaf.digest, leaf.size, leaf.chunks)

    def leaf(self, name: str) -> Leaf:
        """This entry as read back from a tree, under ``name``."""
        if self.ref:
            return Ref(name, self.digest, self.size, self.ref["u"], self.ref.get("x") or {})
        return File(name, self.digest, self.size, self.chunks)

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


def _name_json(name: str) -> str:
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'"{name}"'  # what json.dumps gives, without its cost (once per file)
    return json.dumps(name, ensure_ascii=False)


def file_json(name: str, digest: str, size: int, chunks: str | None = None) -> str:
    """The encoded tree entry of a stored file (what `encode` makes of it, written directly:
    this runs once per file of every log)."""
    if chunks:
        return f'{{"c":"{chunks}","d":"{digest}","n":{_name_json(name)},"s":{size},"t":"f"}}'
    return f'{{"d":"{digest}","n":{_name_json(name)},"s":{size},"t":"f"}}'


def dir_json(name: str, digest: str, size: int, count: int) -> str:
    return f'{{"d":"{digest}","k":{count},"n":{_name_json(name)},"s":{size},"t":"d"}}'


def entry_json(name: str, entry: FileEntry) -> str:
    if entry.ref:
        return encode(entry.to_json(name)).decode()
    return file_json(name, entry.digest, entry.size, entry.chunks)


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a folder being written: its name, its encoded form, and the tree object it
    points to (folders only)."""

    name: str
    json: str
    subtree: str | None = None


Put = Callable[[str, bytes, list[str]], None]  # (digest, body, tree objects it points to)


def _tree_body(parts: Iterable[str]) -> bytes:
    return ('{"cairn":"tree","entries":[' + ",".join(parts) + '],"v":1}').encode()


def _pages_body(parts: Iterable[str]) -> bytes:
    return ('{"cairn":"pages","pages":[' + ",".join(parts) + '],"v":1}').encode()


def _page_json(first: str, digest: str, count: int) -> str:
    return f'{{"d":"{digest}","first":{_name_json(first)},"k":{count}}}'


_PageRef = tuple[str, str, int, list[str]]  # (first name, its json, entries, tree objects)


def _ends_page(name: str, n: int) -> bool:
    """Whether a page of ``n`` entries ending at ``name`` is complete: at a content-defined
    boundary once it has MIN_PAGE entries, else at MAX_ENTRIES."""
    return (n >= MIN_PAGE and _is_boundary(name)) or n >= MAX_ENTRIES


def _put_page(chunk: list[Item], put: Put) -> _PageRef:
    body = _tree_body(c.json for c in chunk)
    digest = hash_bytes(body)
    put(digest, body, [c.subtree for c in chunk if c.subtree])
    first = chunk[0].name
    return (first, _page_json(first, digest, len(chunk)), len(chunk), [digest])


def _put_index(level: list[_PageRef], put: Put) -> str:
    """The page index over ``level`` (split the same way when it is wider than MAX_ENTRIES);
    its digest."""
    while len(level) > MAX_ENTRIES:
        upper: list[_PageRef] = []
        start = 0
        for i, (name, _j, _k, _s) in enumerate(level):
            if _ends_page(name, i - start + 1) or i == len(level) - 1:
                group = level[start : i + 1]
                body = _pages_body(c[1] for c in group)
                digest = hash_bytes(body)
                put(digest, body, [d for c in group for d in c[3]])
                count = sum(c[2] for c in group)
                first = level[start][0]
                upper.append((first, _page_json(first, digest, count), count, [digest]))
                start = i + 1
        level = upper
    body = _pages_body(c[1] for c in level)
    digest = hash_bytes(body)
    put(digest, body, [d for c in level for d in c[3]])
    return digest


def write_folder(items: list[Item], put: Put) -> str:
    """Write one folder's tree object(s) through ``put`` and return the folder's digest.
    ``items`` are sorted by name. A folder of more than MAX_ENTRIES entries is split into
    pages at content-defined boundaries (so inserting one name changes one page) under a
    page index, itself split the same way when it grows too wide. Every object is put
    before the object pointing to it."""
    if len(items) <= MAX_ENTRIES:
        body = _tree_body(i.json for i in items)
        digest = hash_bytes(body)
        put(digest, body, [i.subtree for i in items if i.subtree])
        return digest
    level: list[_PageRef] = []
    start = 0
    for i, item in enumerate(items):
        if _ends_page(item.name, i - start + 1) or i == len(items) - 1:
            level.append(_put_page(items[start : i + 1], put))
            start = i + 1
    return _put_index(level, put)


class FolderWriter:
    """A folder being written (by `TreeWriter`, or a merge of parts), its entries given in name
    order: the entries not yet in a page, and, once it has more than MAX_ENTRIES (so it will be
    paged), the pages written so far. A folder of a million entries holds at most one page's
    worth of them."""

    __slots__ = ("count", "last", "pages", "pending", "size")

    def __init__(self) -> None:
        self.pending: list[Item] = []
        self.pages: list[_PageRef] | None = None
        self.last: Item | None = None
        self.size = 0
        self.count = 0

    def add(self, item: Item, where: str, put: Put) -> None:
        last = self.last
        if last is not None and item.name <= last.name:
            path = f"{where}/{item.name}" if where else item.name
            if item.name == last.name:
                if item.subtree is None and last.subtree is None:
                    raise InvalidPathError(f"two files at one path: {path!r}")
                raise InvalidPathError(f"{path!r} is both a file and a folder")
            raise ValueError(f"entries are not in tree order at {path!r}")  # a caller's bug
        self.last = item
        self.pending.append(item)
        if self.pages is None:
            if len(self.pending) > MAX_ENTRIES:  # it will be paged: write what is complete
                self.pages = []
                start = 0
                for i, held in enumerate(self.pending):
                    if _ends_page(held.name, i - start + 1):
                        self.pages.append(_put_page(self.pending[start : i + 1], put))
                        start = i + 1
                del self.pending[:start]
        elif _ends_page(item.name, len(self.pending)):
            self.pages.append(_put_page(self.pending, put))
            self.pending = []

    def write(self, put: Put) -> str:
        if self.pages is None:
            return write_folder(self.pending, put)
        if self.pending:
            self.pages.append(_put_page(self.pending, put))
        return _put_index(self.pages, put)


def check_paths(entries: Iterable[FileEntry]) -> None:
    """InvalidPathError for a path not in normal form ('a/b')."""
    for entry in entries:
        if check_path(entry.path) != entry.path:
            raise InvalidPathError(f"artifact path {entry.path!r} is not in normal form ('a/b')")


def build(entries: list[FileEntry]) -> BuiltTree:
    """Build the tree objects for a flat list of file entries. Raises InvalidPathError for an
    invalid path, two entries at one path, or a path that is both a file and a folder.
    Iterative: any depth of nesting works."""
    check_paths(entries)
    root = _Dir()
    for entry in entries:
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

    def put(digest: str, body: bytes, refs: list[str]) -> None:
        objects[digest] = body
        children[digest] = refs

    # post order without recursion: a folder is written once all its subfolders are
    done: dict[int, tuple[str, int, int]] = {}  # id(node) -> (digest, size, count)
    stack: list[tuple[_Dir, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            stack.append((node, True))
            stack.extend((sub, False) for sub in node.dirs.values())
            continue
        items: list[Item] = []
        total_size = total_count = 0
        for name, sub in node.dirs.items():
            digest, size, count = done.pop(id(sub))
            items.append(Item(name, dir_json(name, digest, size, count), digest))
            total_size += size
            total_count += count
        for name, f in node.files.items():
            items.append(Item(name, entry_json(name, f)))
            total_size += f.size
            total_count += 1
        items.sort(key=lambda item: item.name)
        digest = write_folder(items, put)
        files[digest] = list(node.files.values())
        done[id(node)] = (digest, total_size, total_count)

    digest, size, count = done[id(root)]
    return BuiltTree(digest, size, count, objects, children, files)


class TreeWriter:
    """Build a version's tree objects from its files given in tree order (each folder's files
    contiguous, as a depth-first walk gives them, names sorted within a folder), writing each
    folder's objects as soon as the folder is complete, and a large folder's pages as soon as
    each is. Memory holds the open folders only (one per level of the current path), and of
    each at most a page of entries, never the whole listing.

    ``closed(path, digest, size, count)``, if given, is told each folder below the root as it
    is written."""

    def __init__(
        self, put: Put, closed: Callable[[str, str, int, int], None] | None = None
    ) -> None:
        self._put = put
        self._closed = closed
        self._names: list[str] = []  # the open folders below the root, outermost first
        self._open: list[FolderWriter] = [FolderWriter()]

    def add(self, entry: FileEntry) -> None:
        *parents, leaf = entry.path.split("/")
        folder = self._enter(parents)
        folder.add(Item(leaf, entry_json(leaf, entry)), "/".join(self._names), self._put)
        folder.size += entry.size
        folder.count += 1

    def add_folder(self, path: str, digest: str, size: int, count: int) -> None:
        """Put a whole folder already stored (its tree object ``digest``) at ``path``, in tree
        order like a file."""
        *parents, leaf = path.split("/")
        folder = self._enter(parents)
        folder.add(
            Item(leaf, dir_json(leaf, digest, size, count), digest),
            "/".join(self._names),
            self._put,
        )
        folder.size += size
        folder.count += count

    def _enter(self, parents: list[str]) -> FolderWriter:
        """Close the open folders not on ``parents`` and open those missing; the innermost."""
        common = 0
        while (
            common < len(self._names)
            and common < len(parents)
            and self._names[common] == parents[common]
        ):
            common += 1
        while len(self._names) > common:
            self._close()
        for name in parents[common:]:
            self._names.append(name)
            self._open.append(FolderWriter())
        return self._open[-1]

    def finish(self) -> tuple[str, int, int]:
        """Write what is still open; the root's (digest, size, file count)."""
        while self._names:
            self._close()
        root = self._open.pop()
        return root.write(self._put), root.size, root.count

    def _close(self) -> None:
        done = self._open.pop()
        digest = done.write(self._put)
        if self._closed is not None:
            self._closed("/".join(self._names), digest, done.size, done.count)
        name = self._names.pop()
        parent = self._open[-1]
        parent.add(
            Item(name, dir_json(name, digest, done.size, done.count), digest),
            "/".join(self._names),
            self._put,
        )
        parent.size += done.size
        parent.count += done.count


# --- reading: typed entries ------------------------------------------------------------------
# Only this module knows the encoded keys; everything else reads these classes.


@dataclass(frozen=True, slots=True)
class File:
    """A file stored in the store: its whole-content digest, size and, for a file cut into
    chunks, the digest of its chunk list."""

    name: str
    digest: str
    size: int
    chunks: str | None = None


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference: data that stays at ``uri``; ``fields`` identify the object there (ETag,
    version, content hash ...), empty when it is tracked by its URI alone."""

    name: str
    digest: str
    size: int
    uri: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dir:
    """A folder: the digest of its tree object, the total size and number of its files."""

    name: str
    digest: str
    size: int
    count: int


Entry = File | Ref | Dir
Leaf = File | Ref


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a wide folder: the name of its first entry, its object, its entry count."""

    first: str
    digest: str
    count: int


@dataclass(frozen=True, slots=True)
class Listing:
    """A tree object: one folder's entries (or one page of them), sorted by name."""

    entries: list[Entry]

    @property
    def count(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class PageIndex:
    """The top object (or an inner index page) of a folder split into pages."""

    pages: list[Page]

    @property
    def count(self) -> int:
        return sum(p.count for p in self.pages)


Node = Listing | PageIndex


@dataclass(frozen=True, slots=True)
class Link:
    """An object another object points to. ``kind``: ``tree`` (a tree or page object),
    ``blob`` (a file's whole content, ``size`` bytes) or ``chunks`` (a chunk list)."""

    digest: str
    kind: Literal["tree", "blob", "chunks"]
    size: int = 0


def _entry(e: dict[str, Any]) -> Entry:
    kind = e["t"]
    if kind == "f":
        return File(e["n"], e["d"], e["s"], e.get("c"))
    if kind == "d":
        return Dir(e["n"], e["d"], e["s"], e["k"])
    if kind == "r":
        return Ref(e["n"], e["d"], e["s"], e["u"], e.get("x") or {})
    raise ValueError(f"unknown tree entry kind {kind!r}")


def parse(data: bytes) -> Node:
    """Decode a tree or page-index object; ValueError if it is not one."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a tree object")
        what = doc.get("cairn")
        if what == "tree":
            return Listing([_entry(e) for e in doc["entries"]])
        if what == "pages":
            return PageIndex([Page(p["first"], p["d"], p["k"]) for p in doc["pages"]])
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a valid tree object ({exc!r})") from None
    raise ValueError("not a tree object")


def links(node: Node) -> list[Link]:
    """The objects a tree or page-index object points to (references point to none)."""
    if isinstance(node, PageIndex):
        return [Link(p.digest, "tree") for p in node.pages]
    out: list[Link] = []
    for e in node.entries:
        if isinstance(e, Dir):
            out.append(Link(e.digest, "tree"))
        elif isinstance(e, File):
            out.append(Link(e.chunks, "chunks") if e.chunks else Link(e.digest, "blob", e.size))
    return out


def children(data: bytes) -> list[Link]:
    """The objects the tree object ``data`` points to; ValueError if it is not a tree object."""
    return links(parse(data))


def reachable(
    roots: Iterable[str], load: Callable[[str], bytes], seen: set[str]
) -> Iterator[tuple[str, bytes, list[Link]]]:
    """Every tree and page object reachable from ``roots`` and not in ``seen``, once each,
    with its bytes and what it points to (one stack, no recursion). ``seen`` is updated; pass
    the same set to several calls to walk what versions share once."""
    stack = [r for r in roots if r not in seen]
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        data = load(digest)
        seen.add(digest)
        found = children(data)
        stack.extend(link.digest for link in found if link.kind == "tree")
        yield digest, data, found


def iter_dir(digest: str, load: Callable[[str], bytes]) -> Iterator[Entry]:
    """The direct entries of one directory object in name order, one page loaded at a time."""
    stack = [digest]
    while stack:
        node = parse(load(stack.pop()))
        if isinstance(node, PageIndex):
            stack.extend(p.digest for p in reversed(node.pages))
        else:
            yield from node.entries


def _in_path_order(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Entries given in name order, re-ordered so that each directory comes where its paths
    sort: 'a/x' sorts after 'a-b' and 'a.txt' but before 'a0'. Holds back only directories."""
    held: list[tuple[str, int, Entry]] = []
    for i, entry in enumerate(entries):
        name = entry.name
        while held and held[0][0] < name:
            yield heapq.heappop(held)[2]
        if isinstance(entry, Dir):
            heapq.heappush(held, (name + "/", i, entry))
        else:
            yield entry
    while held:
        yield heapq.heappop(held)[2]


def iter_entries(
    digest: str,
    load: Callable[[str], bytes],
    prefix: str = "",
    prune: Callable[[str, Dir], bool] | None = None,
) -> Iterator[tuple[str, Entry]]:
    """Yield (path, entry) for every entry below the object, depth first, in path order (the
    files come out as ``sorted()`` of their paths). Directory entries are yielded too, just
    before their contents; the contents of one for which ``prune(path, dir)`` is true are
    not. Iterative: any depth of nesting works."""
    stack: list[tuple[str, Iterator[Entry]]] = [(prefix, _in_path_order(iter_dir(digest, load)))]
    while stack:
        base, it = stack[-1]
        entry = next(it, None)
        if entry is None:
            stack.pop()
            continue
        path = base + entry.name
        yield path, entry
        if isinstance(entry, Dir) and not (prune is not None and prune(path, entry)):
            stack.append((path + "/", _in_path_order(iter_dir(entry.digest, load))))


def iter_files(
    digest: str, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[tuple[str, Leaf]]:
    """(path, file or reference) of every file below the object, in path order."""
    for path, entry in iter_entries(digest, load, prefix):
        if not isinstance(entry, Dir):
            yield path, entry


def list_dir(digest: str, load: Callable[[str], bytes]) -> list[Entry]:
    """The direct entries of one directory object (pages joined), in name order."""
    return list(iter_dir(digest, load))


def _find(digest: str, name: str, load: Callable[[str], bytes]) -> Entry | None:
    """The entry called ``name`` in one directory, loading only the page that can hold it."""
    node = parse(load(digest))
    while isinstance(node, PageIndex):
        pages = node.pages
        i = bisect.bisect_right([p.first for p in pages], name) - 1
        if i < 0:
            return None
        node = parse(load(pages[i].digest))
    return next((e for e in node.entries if e.name == name), None)


def lookup(digest: str, path: str, load: Callable[[str], bytes]) -> Entry | None:
    """The entry at ``path`` (file or directory), or None."""
    parts = path.split("/")
    current = digest
    for i, part in enumerate(parts):
        match = _find(current, part, load)
        if match is None:
            return None
        if i == len(parts) - 1:
            return match
        if not isinstance(match, Dir):
            return None
        current = match.digest
    return None


def files_below(
    digest: str, path: str | None, load: Callable[[str], bytes]
) -> Iterator[tuple[str, Leaf]]:
    """The files at or below ``path`` (a file or a folder; everything when None), in path
    order; nothing when the path is not in the tree."""
    if not path:
        yield from iter_files(digest, load)
        return
    entry = lookup(digest, path, load)
    if entry is None:
        return
    if isinstance(entry, Dir):
        yield from iter_files(entry.digest, load, path + "/")
    else:
        yield path, entry


@dataclass
class Change:
    path: str
    kind: str  # "added" | "removed" | "modified"
    old: Leaf | None
    new: Leaf | None


def _entries_except(node: Node, load: Callable[[str], bytes], skip: set[str]) -> dict[str, Entry]:
    """The entries of a directory object by name, leaving out the pages in ``skip``."""
    out: dict[str, Entry] = {}
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Listing):
            out.update((e.name, e) for e in current.entries)
            continue
        stack.extend(parse(load(p.digest)) for p in current.pages if p.digest not in skip)
    return out


def _same(a: Entry, b: Entry) -> bool:
    return a.digest == b.digest and type(a) is type(b) and a.size == b.size


@dataclass(frozen=True, slots=True)
class _Sub:
    """A folder present or changed on either side: diffed after the entries sorted before it."""

    old: str | None
    new: str | None
    prefix: str


def diff(
    old: str | None, new: str | None, load: Callable[[str], bytes], prefix: str = ""
) -> Iterator[Change]:
    """Files added, removed and modified between two trees, in path order; identical subtrees
    (and identical pages of wide directories) are skipped without being read. Iterative: any
    depth of nesting works."""
    stack: list[Iterator[Change | _Sub]] = [_diff_dir(old, new, load, prefix)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, _Sub):
            stack.append(_diff_dir(item.old, item.new, load, item.prefix))
        else:
            yield item


def _diff_dir(
    old: str | None, new: str | None, load: Callable[[str], bytes], prefix: str
) -> Iterator[Change | _Sub]:
    if old == new:
        return
    old_node = parse(load(old)) if old else None
    new_node = parse(load(new)) if new else None
    shared: set[str] = set()
    if isinstance(old_node, PageIndex) and isinstance(new_node, PageIndex):
        # a page found on both sides lists the same entries on both: none of them changed
        shared = {p.digest for p in old_node.pages} & {p.digest for p in new_node.pages}
    old_entries = _entries_except(old_node, load, shared) if old_node else {}
    new_entries = _entries_except(new_node, load, shared) if new_node else {}
    todo: list[tuple[str, str]] = []  # (sort key, name); a folder's key is 'name/'
    for name in old_entries.keys() | new_entries.keys():
        a = old_entries.get(name)
        b = new_entries.get(name)
        if a and b and _same(a, b):
            continue
        if (a and not isinstance(a, Dir)) or (b and not isinstance(b, Dir)):
            todo.append((name, name))
        if isinstance(a, Dir) or isinstance(b, Dir):
            todo.append((name + "/", name))
    for key, name in sorted(todo):
        a = old_entries.get(name)
        b = new_entries.get(name)
        path = prefix + name
        if key.endswith("/"):
            yield _Sub(
                a.digest if isinstance(a, Dir) else None,
                b.digest if isinstance(b, Dir) else None,
                path + "/",
            )
            continue
        a_file = a if a and not isinstance(a, Dir) else None
        b_file = b if b and not isinstance(b, Dir) else None
        if a_file and b_file:
            yield Change(path, "modified", a_file, b_file)
        elif a_file:
            yield Change(path, "removed", a_file, None)
        else:
            yield Change(path, "added", None, b_file)
