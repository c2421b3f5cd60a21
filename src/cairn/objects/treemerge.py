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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cairn.errors import PartConflictError
from cairn.objects.tree import (
    Dir,
    File,
    FileEntry,
    Item,
    Leaf,
    dir_json,
    entry_json,
    file_json,
    list_dir,
    write_folder,
)


@dataclass
class MergedTree:
    root: str
    size: int
    file_count: int
    objects: dict[str, bytes]  # the tree objects the merge wrote, children before parents


@dataclass
class _Frame:
    path: str  # "" for the root, else "a/b/"
    name: str
    parent: _Frame | None
    items: list[Item] = field(default_factory=list)
    size: int = 0
    count: int = 0
    todo: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


def _leaf_json(leaf: Leaf) -> str:
    if isinstance(leaf, File):
        return file_json(leaf.name, leaf.digest, leaf.size, leaf.chunks)
    return entry_json(leaf.name, FileEntry.of(leaf.name, leaf))


def _describe(parts: list[str]) -> str:
    shown = ", ".join(repr(p) for p in parts[:5])
    return shown + (f" and {len(parts) - 5} more" if len(parts) > 5 else "")


def merge(parts: Sequence[tuple[str, str]], load: Callable[[str], bytes]) -> MergedTree:
    """The tree holding the files of every part: ``parts`` are (part id, root digest)."""
    objects: dict[str, bytes] = {}

    def put(digest: str, body: bytes, refs: list[str]) -> None:
        objects.setdefault(digest, body)

    def expand(
        path: str, name: str, parent: _Frame | None, sources: list[tuple[str, str]]
    ) -> _Frame:
        frame = _Frame(path, name, parent)
        by_name: dict[str, list[tuple[str, Dir | Leaf]]] = {}
        for part, digest in sources:
            for entry in list_dir(digest, load):
                by_name.setdefault(entry.name, []).append((part, entry))
        for entry_name, found in by_name.items():
            if len(found) == 1:  # the common case: a name only one part has
                only = found[0][1]
                if isinstance(only, Dir):
                    json = dir_json(entry_name, only.digest, only.size, only.count)
                    frame.items.append(Item(entry_name, json, only.digest))
                    frame.count += only.count
                else:
                    frame.items.append(Item(entry_name, _leaf_json(only)))
                    frame.count += 1
                frame.size += only.size
                continue
            where = path + entry_name
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
                leaf = leaves[0][1]
                frame.items.append(Item(entry_name, jsons.pop()))
                frame.size += leaf.size
                frame.count += 1
                continue
            distinct = {e.digest: e for _, e in dirs if isinstance(e, Dir)}
            if len(distinct) == 1:
                d = next(iter(distinct.values()))
                frame.items.append(
                    Item(entry_name, dir_json(entry_name, d.digest, d.size, d.count), d.digest)
                )
                frame.size += d.size
                frame.count += d.count
            else:
                frame.todo.append((entry_name, [(p, e.digest) for p, e in dirs]))
        return frame

    first_part: dict[str, str] = {}  # root -> the first part that has it
    for part, root in parts:
        first_part.setdefault(root, part)
    distinct_roots = [(part, root) for root, part in first_part.items()]
    stack = [expand("", "", None, distinct_roots)]
    while True:
        frame = stack[-1]
        if frame.todo:
            name, sources = frame.todo.pop()
            stack.append(expand(frame.path + name + "/", name, frame, sources))
            continue
        stack.pop()
        frame.items.sort(key=lambda item: item.name)
        digest = write_folder(frame.items, put)
        parent = frame.parent
        if parent is None:
            return MergedTree(digest, frame.size, frame.count, objects)
        parent.items.append(
            Item(frame.name, dir_json(frame.name, digest, frame.size, frame.count), digest)
        )
        parent.size += frame.size
        parent.count += frame.count


__all__ = ["MergedTree", "merge"]
