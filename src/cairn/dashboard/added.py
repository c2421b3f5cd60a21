"""Bytes a version added to the store: the size of the stored objects it refers to that no
earlier live version of the same artifact refers to.

A version's tree is walked the way the store keeps bytes (see `cairn.dashboard.storage`): a
small file is one blob, a large file a chunk list and its content-defined chunks, and every
folder listing (tree or page object) is an object too. So a 1 MiB change in a 500 MiB
checkpoint adds the few chunks around the change (about 1 MiB) and the chunk list and folder
objects that changed, not 0 B (the files' count and the version's size barely move) and not
500 MiB (most chunks were already stored). The first version adds everything it holds (each
distinct object once). "Earlier" means a lower version number still live: a deleted version's
bytes are freed by gc, so the next live version is charged for what it shares with it.

`AddedIndex` computes every version of an artifact in one pass, oldest first, with one set of
known objects (a subtree an earlier version has is skipped whole, as gc's mark does), and keeps
the result until the artifact changes (a version logged or deleted, an alias moved: its
``updated_at`` and version count). A later version logged on top continues from the kept sets
instead of starting again. Objects missing from the store make that version's figure unknown
(None), not an error. One request reads at most about `LIST_BUDGET` objects for a versions list
(`PAGE_BUDGET` for a version's page): a first look at a long history shows the figures computed
so far and the next request goes on from there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from cairn.core.records import VersionInfo
from cairn.errors import ArtifactNotFoundError, ObjectNotFoundError
from cairn.objects import chunking, tree
from cairn.objects.store import ObjectStore
from cairn.service.registry import Registry

_PAGE = 1000
LIST_BUDGET = 2_000  # objects a versions list may read per request to compute the figures
PAGE_BUDGET = 20_000  # the same for one version's page
KEEP_WALKS = 16  # artifacts whose known-object sets are kept to continue from
KEEP_RESULTS = 4096  # artifacts whose figures are kept


@dataclass
class _Walk:
    """One artifact's pass so far: the versions walked, oldest first, and what they hold."""

    done: list[tuple[int, int, str]] = field(default_factory=list)  # (number, id, digest)
    trees: set[str] = field(default_factory=set)  # tree and page objects seen
    objects: set[str] = field(default_factory=set)  # blobs, chunk lists and chunks seen
    added: dict[int, int | None] = field(default_factory=dict)  # version id -> bytes
    stamp: tuple[datetime, int] | None = None  # the artifact's, when `versions` was listed
    versions: list[tuple[int, int, str]] = field(default_factory=list)  # every live one


@dataclass
class _Result:
    stamp: tuple[datetime, int]
    added: dict[int, int | None]


@dataclass
class Added:
    """The figures of an artifact's versions: version id -> bytes added (None: some of its
    objects are missing); ``pending`` versions are not computed yet (the next request goes on
    from where this one stopped)."""

    added: dict[int, int | None]
    pending: int = 0
    total: int = 0

    def get(self, version_id: int) -> int | None:
        return self.added.get(version_id)

    def known(self, version_id: int) -> bool:
        return version_id in self.added


def _live_versions(registry: Registry, project: str, name: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    offset = 0
    while True:
        page = registry.list_versions(project, name, limit=_PAGE, offset=offset)
        found.extend((v.version, v.id, v.digest) for v in page)
        if len(page) < _PAGE:
            break
        offset += _PAGE
    return sorted(found)


def added_by(
    object_store: ObjectStore,
    digest: str,
    trees: set[str],
    objects: set[str],
    reads: list[int] | None = None,
) -> int:
    """The bytes of the objects below the tree ``digest`` not in ``trees``/``objects`` (both
    updated): what this tree adds to trees already walked. ``reads[0]`` counts the objects
    read."""
    counter = reads if reads is not None else [0]

    def load(d: str) -> bytes:
        counter[0] += 1
        return object_store.get(d, verify=False)

    total = 0
    for _, data, links in tree.reachable([digest], load, trees):
        total += len(data)
        for link in links:
            if link.digest in objects:
                continue
            objects.add(link.digest)
            if link.kind == "blob":
                total += link.size
            elif link.kind == "chunks":
                listing = load(link.digest)
                total += len(listing)
                for chunk, size in chunking.decode_chunk_list(listing):
                    if chunk not in objects:
                        objects.add(chunk)
                        total += size
    return total


class AddedIndex:
    """Bytes added per version, per artifact, kept per process (one per dashboard)."""

    def __init__(self, list_budget: int = LIST_BUDGET, page_budget: int = PAGE_BUDGET) -> None:
        self.list_budget = list_budget
        self.page_budget = page_budget
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple[str, str], _Result] = OrderedDict()
        self._walks: OrderedDict[tuple[str, str], _Walk] = OrderedDict()

    def artifact(
        self,
        registry: Registry,
        object_store: ObjectStore,
        project: str,
        name: str,
        budget: int | None = None,
        upto: int | None = None,
    ) -> Added:
        """The figures of every live version of the artifact, computed oldest first until
        about ``budget`` objects were read (a version is always finished) or version ``upto``
        (a number) is done; ``budget`` defaults to the index's ``list_budget``."""
        if budget is None:
            budget = self.list_budget
        key = (project, name)
        try:
            art = registry.get_artifact(project, name)
        except ArtifactNotFoundError:
            return Added({})
        stamp = (art.updated_at, art.version_count)
        with self._lock:
            kept = self._results.get(key)
            if kept is not None and kept.stamp == stamp:
                self._results.move_to_end(key)
                return Added(kept.added, 0, len(kept.added))
            walk = self._walks.pop(key, None)
            if walk is not None and walk.stamp == stamp:
                versions = walk.versions  # a walk under way: the artifact has not changed
            else:
                versions = _live_versions(registry, project, name)
                if walk is None or walk.done != versions[: len(walk.done)]:
                    walk = _Walk()  # a version was deleted: start again
                walk.stamp, walk.versions = stamp, versions
            reads = [0]
            for entry in versions[len(walk.done) :]:
                number, version_id, digest = entry
                if reads[0] >= budget or (upto is not None and number > upto):
                    break
                try:
                    found = added_by(object_store, digest, walk.trees, walk.objects, reads)
                except (ObjectNotFoundError, ValueError):
                    found = None
                walk.added[version_id] = found
                walk.done.append(entry)
            self._walks[key] = walk
            while len(self._walks) > KEEP_WALKS:
                self._walks.popitem(last=False)
            pending = len(versions) - len(walk.done)
            if pending:
                return Added(dict(walk.added), pending, len(versions))
            self._results[key] = _Result(stamp, dict(walk.added))
            while len(self._results) > KEEP_RESULTS:
                self._results.popitem(last=False)
            return Added(dict(walk.added), 0, len(versions))

    def version(self, registry: Registry, object_store: ObjectStore, info: VersionInfo) -> Added:
        """The figures up to ``info`` (its own: ``.get(info.id)``, when ``.known(info.id)``)."""
        return self.artifact(
            registry,
            object_store,
            info.project,
            info.name,
            budget=self.page_budget,
            upto=info.version,
        )


__all__ = ["Added", "AddedIndex", "added_by"]
