"""Merging the trees of several parts into the tree of one version (distributed logging).

Each part is a tree already stored (its files at their paths in the version). The merged tree
is exactly the tree `tree.build` makes of the union of the parts' files, so a version logged by
many workers has the digest one process logging the same files gets.

Only folders that more than one part holds *with different content* are read and written
again; a folder only one part has (or that every part holding it has identically) is reused by
its digest without reading below it. Splitting a file list into contiguous runs of sorted paths
therefore makes the merge cost a few folders, not the whole tree. No file bytes are read.

Two parts with different content at one path (or a file in one where another has a folder)
raise `PartConflictError` naming the path and the parts. The same file in several parts is
fine. Iterative: any depth works.

Memory does not grow with a folder's size: the parts' listings of a folder several parts hold
are read a page at a time, each from when the merge reaches its first name, and merged in name
order into a folder written a page at a time (`tree.FolderWriter`); the tree objects written go
to a spill file, not memory. A flat folder of millions of files cut across hundreds of parts
costs a few pages.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cairn.errors import PartConflictError
from cairn.objects.spill import Spill
from cairn.objects.tree import (
    Dir,
    Entry,
    File,
    FileEntry,
    FolderWriter,
    Item,
    Leaf,
    PageIndex,
    dir_json,
    entry_json,
    file_json,
    iter_dir,
    parse,
)

_SPILL_BATCH = 64  # tree objects (pages of up to ~400 KB) held before they go to the spill


@dataclass
class MergedTree:
    """The merged version's root, and the tree objects the merge wrote (children before
    parents): their digests in ``digests``, their bodies in ``objects`` (read back with
    `bodies`). Close it when done."""

    root: str
    size: int
    file_count: int
    digests: list[str]
    objects: Spill

    def bodies(self) -> Iterator[tuple[str, bytes]]:
        for batch in self.objects.batches():
            yield from batch

    def close(self) -> None:
        self.objects.close()


def _leaf_json(leaf: Leaf) -> str:
    if isinstance(leaf, File):
        return file_json(leaf.name, leaf.digest, leaf.size, leaf.chunks)
    return entry_json(leaf.name, FileEntry.of(leaf.name, leaf))


def _describe(parts: list[str]) -> str:
    shown = ", ".join(repr(p) for p in parts[:5])
    return shown + (f" and {len(parts) - 5} more" if len(parts) > 5 else "")


def _first_name(digest: str, load: Callable[[str], bytes]) -> str | None:
    """The first name in a folder object, from its top object alone (a paged folder's index
    names each page's first entry); None for an empty folder."""
    node = parse(load(digest))
    if isinstance(node, PageIndex):
        return node.pages[0].first if node.pages else None
    return node.entries[0].name if node.entries else None


def _in_name_order(
    sources: list[tuple[str, str]], load: Callable[[str], bytes]
) -> Iterator[tuple[str, str, Entry]]:
    """(name, part, entry) of every entry of the sources' folders, in name order. A source is
    read (a page at a time) only once the merge reaches its first name: parts cut from a sorted
    list cover ranges that barely overlap, so a few are being read at any time, not all."""
    waiting = sorted(
        (first, order, part, digest)
        for order, (part, digest) in enumerate(sources)
        if (first := _first_name(digest, load)) is not None
    )
    waiting.reverse()  # popped from the end: smallest first name first
    heads: list[tuple[str, int, str, Entry, Iterator[Entry]]] = []
    while heads or waiting:
        while waiting and (not heads or waiting[-1][0] <= heads[0][0]):
            _first, order, part, digest = waiting.pop()
            entries = iter_dir(digest, load)
            entry = next(entries, None)
            if entry is not None:
                heapq.heappush(heads, (entry.name, order, part, entry, entries))
        name, order, part, entry, entries = heads[0]
        yield name, part, entry
        following = next(entries, None)
        if following is None:
            heapq.heappop(heads)
        else:
            heapq.heapreplace(heads, (following.name, order, part, following, entries))


@dataclass
class _Frame:
    """A folder several parts hold differently, being merged: the parts' entries by name (a
    page of each loaded at a time) and the merged folder being written."""

    path: str  # "" for the root, else "a/b/"
    name: str
    groups: Iterator[tuple[str, list[tuple[str, Entry]]]]
    folder: FolderWriter = field(default_factory=FolderWriter)


def _open(
    path: str, name: str, sources: list[tuple[str, str]], load: Callable[[str], bytes]
) -> _Frame:
    by_name = itertools.groupby(_in_name_order(sources, load), key=lambda t: t[0])
    groups = ((n, [(part, e) for _n, part, e in found]) for n, found in by_name)
    return _Frame(path, name, groups)


def merge(parts: Sequence[tuple[str, str]], load: Callable[[str], bytes]) -> MergedTree:
    """The tree holding the files of every part: ``parts`` are (part id, root digest)."""
    spill = Spill()
    digests: list[str] = []
    held: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def put(digest: str, body: bytes, refs: list[str]) -> None:
        if digest in seen:
            return
        seen.add(digest)
        digests.append(digest)
        held.append((digest, body))
        if len(held) >= _SPILL_BATCH:
            spill.append(held)
            held.clear()

    first_part: dict[str, str] = {}  # root -> the first part that has it
    for part, root in parts:
        first_part.setdefault(root, part)
    distinct_roots = [(part, root) for root, part in first_part.items()]
    try:
        stack = [_open("", "", distinct_roots, load)]
        while True:
            frame = stack[-1]
            below = None
            for entry_name, found in frame.groups:  # resumes where a subfolder stopped it
                below = _take(frame, entry_name, found, put)
                if below is not None:
                    break
            if below is not None:
                stack.append(_open(frame.path + below[0] + "/", below[0], below[1], load))
                continue
            stack.pop()
            done = frame.folder
            digest = done.write(put)
            if not stack:
                spill.append(held)
                return MergedTree(digest, done.size, done.count, digests, spill)
            parent = stack[-1]
            item = Item(frame.name, dir_json(frame.name, digest, done.size, done.count), digest)
            parent.folder.add(item, parent.path.rstrip("/"), put)
            parent.folder.size += done.size
            parent.folder.count += done.count
    except BaseException:
        spill.close()
        raise


def _take(
    frame: _Frame,
    entry_name: str,
    found: list[tuple[str, Entry]],
    put: Callable[[str, bytes, list[str]], None],
) -> tuple[str, list[tuple[str, str]]] | None:
    """Add the entry ``found`` in the parts under one name to the frame's folder; a folder the
    parts hold differently is returned (name, [(part, digest)]) to be merged first."""
    folder = frame.folder
    where = frame.path + entry_name
    dirs = [(p, e) for p, e in found if isinstance(e, Dir)]
    leaves = [(p, e) for p, e in found if not isinstance(e, Dir)]
    if dirs and leaves:
        raise PartConflictError(
            f"{where!r} is a folder in part(s) {_describe([p for p, _ in dirs])} and a "
            f"file in part(s) {_describe([p for p, _ in leaves])}: nothing was committed",
            path=where,
            parts=[p for p, _ in found],
        )
    if leaves:
        jsons = {_leaf_json(e) for _, e in leaves}
        if len(jsons) > 1:
            raise PartConflictError(
                f"{where!r} has different content in parts "
                f"{_describe(sorted({p for p, _ in leaves}))}: two workers wrote the "
                "same path with different bytes; nothing was committed",
                path=where,
                parts=sorted({p for p, _ in leaves}),
            )
        folder.add(Item(entry_name, jsons.pop()), frame.path.rstrip("/"), put)
        folder.size += leaves[0][1].size
        folder.count += 1
        return None
    distinct = {e.digest: e for _, e in dirs if isinstance(e, Dir)}
    if len(distinct) > 1:
        return entry_name, [(p, e.digest) for p, e in dirs if isinstance(e, Dir)]
    d = next(iter(distinct.values()))
    item = Item(entry_name, dir_json(entry_name, d.digest, d.size, d.count), d.digest)
    folder.add(item, frame.path.rstrip("/"), put)
    folder.size += d.size
    folder.count += d.count
    return None


__all__ = ["MergedTree", "merge"]
