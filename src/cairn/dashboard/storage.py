"""What the store holds, per artifact: the bytes its live versions refer to, and the bytes only
they refer to (what deleting the artifact's versions would free at the next gc).

Two views: store-wide (``exclusive``: no other artifact of any project refers to the bytes; the
store's totals) for server administrators, who may see every project; and per project
(``exclusive_in_project``: no other artifact of the same project refers to them; the project's
own deduplicated total) for everyone else, so that nothing shown depends on what projects the
viewer may not read hold (it would tell them whether some other project holds a file).

Computed from the trees, deduplicated by object digest, exactly as the store keeps bytes: a
small file is one blob, a large file its chunk list and chunks (two checkpoints that share most
chunks share those bytes), and tree objects count too. Each artifact's trees are walked once
per distinct subtree (versions that share folders share the walk). The result is cached for as
long as the set of live versions is unchanged (any logged, deleted or moved version changes the
fingerprint).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cairn.core.records import VersionInfo
from cairn.objects import chunking, tree
from cairn.objects.packs.local import LocalPackStore
from cairn.objects.store import ObjectStore
from cairn.service.registry import Registry

_PAGE = 1000
_CHUNK_LISTS = 20_000  # chunk lists kept in memory between computations


@dataclass
class ArtifactUsage:
    project: str
    name: str
    type: str
    versions: int = 0
    logical: int = 0  # the sum of its versions' sizes (what they would take without dedup)
    held: int = 0  # distinct bytes its versions refer to
    exclusive: int = 0  # bytes no other artifact's live version refers to
    exclusive_in_project: int = 0  # bytes no other artifact of its project refers to


@dataclass
class StorageReport:
    artifacts: list[ArtifactUsage]
    total: int  # distinct bytes referred to by every live version
    logical: int  # the sum of every live version's size
    versions: int
    on_disk: int | None  # bytes of pack files in a local store (includes unreferenced objects)
    computed_at: datetime
    seconds: float
    by_key: dict[tuple[str, str], ArtifactUsage] = field(default_factory=dict)
    project_totals: dict[str, int] = field(default_factory=dict)  # distinct bytes per project

    def project(self, project: str) -> list[ArtifactUsage]:
        return [a for a in self.artifacts if a.project == project]


def live_versions(registry: Registry) -> Iterator[tuple[str, str, str, list[VersionInfo]]]:
    """(project, artifact, type, its live versions) for every artifact of every project."""
    for p in registry.list_projects():
        offset = 0
        while True:
            arts = registry.list_artifacts(p.name, limit=_PAGE, offset=offset)
            for a in arts:
                versions: list[VersionInfo] = []
                voff = 0
                while True:
                    page = registry.list_versions(p.name, a.name, limit=_PAGE, offset=voff)
                    versions.extend(page)
                    if len(page) < _PAGE:
                        break
                    voff += _PAGE
                yield p.name, a.name, a.type, versions
            if len(arts) < _PAGE:
                break
            offset += _PAGE


def _pack_bytes(object_store: ObjectStore) -> int | None:
    """The bytes of a local store's pack files (None for other stores)."""
    if not isinstance(object_store, LocalPackStore):
        return None
    return sum(size for size, _ in object_store.packs().values())


class StorageIndex:
    """Computes `StorageReport`s and keeps the last one (per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: tuple[str, StorageReport] | None = None
        self._chunk_lists: dict[str, tuple[int, list[tuple[str, int]]]] = {}

    def report(self, registry: Registry, object_store: ObjectStore) -> StorageReport:
        started = time.monotonic()
        listing = list(live_versions(registry))
        fingerprint = hashlib.sha256()
        for project, name, _, versions in listing:
            for v in versions:
                fingerprint.update(f"{project}/{name}/{v.id}/{v.digest}\n".encode())
        key = fingerprint.hexdigest()
        with self._lock:
            if self._report is not None and self._report[0] == key:
                return self._report[1]
        report = self._compute(listing, object_store, started)
        with self._lock:
            self._report = (key, report)
        return report

    def _chunk_list(
        self, object_store: ObjectStore, digest: str
    ) -> tuple[int, list[tuple[str, int]]]:
        found = self._chunk_lists.get(digest)
        if found is None:
            data = object_store.get(digest, verify=False)
            found = (len(data), chunking.decode_chunk_list(data))
            if len(self._chunk_lists) >= _CHUNK_LISTS:
                self._chunk_lists.clear()
            self._chunk_lists[digest] = found
        return found

    def _walk(
        self, object_store: ObjectStore, root: str, into: dict[str, int], seen: set[str]
    ) -> None:
        def load(digest: str) -> bytes:
            return object_store.get(digest, verify=False)

        for digest, data, found in tree.reachable([root], load, seen):
            into[digest] = len(data)
            for link in found:
                if link.kind == "blob":
                    into[link.digest] = link.size
                elif link.kind == "chunks" and link.digest not in into:
                    length, parts = self._chunk_list(object_store, link.digest)
                    into[link.digest] = length
                    for d, n in parts:
                        into[d] = n

    def _compute(
        self,
        listing: list[tuple[str, str, str, list[VersionInfo]]],
        object_store: ObjectStore,
        started: float,
    ) -> StorageReport:
        owner: dict[str, int] = {}  # object -> the one artifact referring to it, or -1
        size: dict[str, int] = {}
        in_project: dict[str, dict[str, int]] = {}  # the same, within each project
        usages: list[ArtifactUsage] = []
        logical = count = 0
        for index, (project, name, type_, versions) in enumerate(listing):
            usage = ArtifactUsage(project, name, type_, versions=len(versions))
            usage.logical = sum(v.size for v in versions)
            logical += usage.logical
            count += len(versions)
            objects: dict[str, int] = {}
            seen: set[str] = set()
            for root in dict.fromkeys(v.digest for v in versions):
                self._walk(object_store, root, objects, seen)
            usage.held = sum(objects.values())
            local = in_project.setdefault(project, {})
            for digest, n in objects.items():
                for owners in (owner, local):
                    previous = owners.get(digest)
                    if previous is None:
                        owners[digest] = index
                    elif previous != index:
                        owners[digest] = -1
                size.setdefault(digest, n)
            usages.append(usage)
        for digest, who in owner.items():
            if who >= 0:
                usages[who].exclusive += size[digest]
        totals: dict[str, int] = {}
        for project, local in in_project.items():
            totals[project] = sum(size[d] for d in local)
            for digest, who in local.items():
                if who >= 0:
                    usages[who].exclusive_in_project += size[digest]
        report = StorageReport(
            artifacts=usages,
            total=sum(size.values()),
            logical=logical,
            versions=count,
            on_disk=_pack_bytes(object_store),
            computed_at=datetime.now(UTC),
            seconds=time.monotonic() - started,
        )
        report.by_key = {(a.project, a.name): a for a in usages}
        report.project_totals = totals
        return report


__all__ = ["ArtifactUsage", "StorageIndex", "StorageReport", "live_versions"]
