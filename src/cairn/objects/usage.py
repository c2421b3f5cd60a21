"""The bytes a set of versions holds, and how much of it only they hold: what deleting them
frees at the next gc (retention's report).

Counted like the store keeps bytes, deduplicated by object digest: a small file is one blob, a
large file its chunk list and its chunks, and tree objects count too. An object any kept root
reaches (or a kept leaf: a run's saved diff) is shared, and gc keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cairn.objects import chunking, tree

Load = Callable[[str], bytes]


def _sizes(roots: Iterable[str], load: Load, into: dict[str, int], seen: set[str]) -> None:
    """Every object below ``roots`` -> its size, into ``into``."""
    for digest, data, found in tree.reachable(list(roots), load, seen):
        into[digest] = len(data)
        for link in found:
            if link.kind == "blob":
                into[link.digest] = link.size
            elif link.kind == "chunks" and link.digest not in into:
                body = load(link.digest)
                into[link.digest] = len(body)
                for d, n in chunking.decode_chunk_list(body):
                    into[d] = n


def exclusive_bytes(
    load: Load, dropped: Iterable[str], kept: Iterable[str], kept_leaves: Iterable[str] = ()
) -> tuple[int, int]:
    """(distinct bytes the ``dropped`` roots reach, of those the bytes no ``kept`` root nor
    leaf reaches)."""
    held: dict[str, int] = {}
    _sizes(dropped, load, held, set())
    shared = set(kept_leaves)
    live: dict[str, int] = {}
    _sizes(kept, load, live, set())
    shared.update(live)
    return sum(held.values()), sum(n for d, n in held.items() if d not in shared)


__all__ = ["exclusive_bytes"]
