"""Logging a version: the protocol every new version goes through, over a `Backend`.

1. Every check that can refuse the version (aliases, tags, metadata, description, the
   artifact's type) comes before a byte is stored. The draft's own aliases and tags are
   applied with those given to the log.
2. The files are hashed and their missing objects stored (`Ingestor.hash_files`); the tree is
   built in memory.
3. If a live version of the artifact already has that root, nothing is written; otherwise the
   trees are stored, the store is synced, and what a concurrent `cairn gc` dropped meanwhile is
   stored again from the user's files (up to `REPAIRS` rounds, then `ConflictError`).
4. The version is committed in one registry call (`Registry.commit_version`), which also
   applies the aliases and tags and records the lineage edge to `run_id`.

`Run.log_artifact` calls `log_version` with the draft an `Artifact` hands over
(`cairn.sdk.artifact.draft_of`); see docs/architecture.md "Write ordering".
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cairn.core import names
from cairn.core.gcpause import gc_relaxed
from cairn.core.records import VersionInfo
from cairn.errors import ConflictError, InvalidInputError, InvalidNameError, NotFoundError
from cairn.objects import tree
from cairn.objects.folders import Listed, stat_folder
from cairn.objects.ingest import Ingestor, IngestStats, SpilledTree, StagedFile
from cairn.objects.spill import Spill
from cairn.objects.tree import BuiltTree, FileEntry
from cairn.sdk.backend import Backend
from cairn.sdk.metadata import stored as stored_metadata
from cairn.sdk.progress import enabled as progress_enabled
from cairn.sdk.progress import progress_bar
from cairn.sdk.walk import FolderSource

STREAM_BATCH = 4096  # files hashed, and their records spilled, at a time
REPAIRS = 3  # times a log stores again what a concurrent gc dropped before giving up


@dataclass
class Draft:
    """What a version is made of: its files (to hash, or already stored) and its fields."""

    name: str
    type: str
    description: Any
    metadata: Any
    aliases: list[str]
    tags: list[str]
    entries: list[StagedFile | FileEntry] = field(default_factory=list)
    folders: list[FolderSource] = field(default_factory=list)  # added whole, walked when logged


@dataclass
class Logged:
    """The version a log made or found, whether it is new, and what the log stored."""

    info: VersionInfo
    created: bool
    stats: IngestStats


def _user_aliases(aliases: list[str]) -> list[str]:
    """The aliases to set on a new version: each checked, duplicates and 'latest' dropped
    (Cairn gives 'latest' to the newest version anyway)."""
    if isinstance(aliases, str):
        raise InvalidInputError("aliases are a list, e.g. aliases=['best']")
    out = [a for a in dict.fromkeys(aliases) if a != "latest"]
    for a in out:
        names.check_alias(a)
    return out


def log_version(
    backend: Backend,
    project: str,
    draft: Draft,
    *,
    run_id: str | None,
    aliases: list[str],
    tags: list[str],
) -> Logged:
    """Store the draft's files and record the version (see the module docstring). A log that
    fails (a file changed, a full disk ...) leaves none of its objects behind to be indexed
    later."""
    try:
        return _log_version(backend, project, draft, run_id=run_id, aliases=aliases, tags=tags)
    except BaseException:
        backend.object_store.discard()
        raise


@gc_relaxed
def _log_version(
    backend: Backend,
    project: str,
    draft: Draft,
    *,
    run_id: str | None,
    aliases: list[str],
    tags: list[str],
) -> Logged:
    aliases = _user_aliases([*draft.aliases, *aliases])
    all_tags = list(dict.fromkeys([*draft.tags, *tags]))
    for t in all_tags:
        names.check_tag(t)
    metadata = stored_metadata(draft.metadata)
    if not isinstance(draft.description, str):
        raise InvalidInputError(
            f"description must be a string, not {type(draft.description).__name__}"
        )
    try:
        existing = backend.registry.resolve(project, draft.name, "latest")
    except NotFoundError:
        existing = None  # a new artifact (or one whose versions were all deleted)
    if existing is not None and existing.type != draft.type:
        raise InvalidNameError(
            f"artifact {project}/{draft.name} already exists with type {existing.type!r}, "
            f"not {draft.type!r}: log it with type={existing.type!r}, or choose another name"
        )
    built: BuiltTree | SpilledTree
    if draft.folders:
        files = sum(f.files for f in draft.folders) + len(draft.entries)
        for whole in (True, False):
            with progress_bar(f"logging {draft.name}", files, None) as advance:
                ingestor = backend.ingestor(advance)
                built = _stream(ingestor, draft, whole=whole)
            try:
                return _store_and_commit(
                    backend, project, draft, ingestor, built, run_id, aliases, all_tags, metadata
                )
            except _FoldersDropped:
                continue  # log again, every file looked at
            finally:
                built.files.close()
                built.trees.close()
        raise AssertionError("a log without whole folders cannot drop them")
    else:
        staged = [v for v in draft.entries if isinstance(v, StagedFile)]
        known = [v for v in draft.entries if isinstance(v, FileEntry)]
        total = 0
        if progress_enabled():  # sizing the bar costs a stat per file: only when it is drawn
            for sf in staged:
                try:
                    total += os.stat(sf.source).st_size
                except OSError:
                    pass  # reported with a clear message by the ingestor
        with progress_bar(f"logging {draft.name}", len(staged), total) as advance:
            ingestor = backend.ingestor(advance)
            entries = ingestor.hash_files(staged) + known
        built = tree.build(entries)
    try:
        return _store_and_commit(
            backend, project, draft, ingestor, built, run_id, aliases, all_tags, metadata
        )
    finally:
        if isinstance(built, SpilledTree):
            built.files.close()
            built.trees.close()


def _stream(ingestor: Ingestor, draft: Draft, *, whole: bool = True) -> SpilledTree:
    """Hash the draft's files in tree order, a batch at a time, building the tree as folders
    complete; per-file records go to spills, so memory does not grow with the file count.
    With ``whole``, a folder of plain files unchanged since a log stored it is taken whole
    (`cairn.objects.folders`)."""
    tree.check_paths(v for v in draft.entries if isinstance(v, FileEntry))
    if whole:
        ingestor.expect_folders(folder.root for folder in draft.folders)
    walks: list[Iterator[tuple[str, StagedFile | FileEntry | _Whole]]] = [
        _walk(folder, whole) for folder in draft.folders
    ]
    if draft.entries:
        walks.append(iter(sorted(((v.path, v) for v in draft.entries), key=_tree_order)))
    merged = walks[0] if len(walks) == 1 else heapq.merge(*walks, key=_tree_order)
    files, trees = Spill(), Spill()
    objects: list[tuple[str, bytes]] = []
    # folders being hashed file by file, remembered whole once written: path -> (folder on
    # disk, signature, newest mtime)
    hashing: dict[str, tuple[str, str, int]] = {}
    folders: list[tuple[str, str, str, int, int, int]] = []

    def closed(path: str, digest: str, size: int, count: int) -> None:
        found = hashing.pop(path, None)
        if found is not None:
            root, sig, newest = found
            folders.append((root, sig, digest, size, count, newest))

    writer = tree.TreeWriter(lambda digest, body, _refs: objects.append((digest, body)), closed)
    batch: list[StagedFile | FileEntry] = []

    def flush() -> None:
        staged = [v for v in batch if isinstance(v, StagedFile)]
        entries, from_cache = ingestor.hash_batch(staged)
        cached = {fe.path for fe in from_cache}
        hashed = iter(entries)
        records: list[tuple[Any, ...]] = []
        for v in batch:
            if isinstance(v, StagedFile):
                fe = next(hashed)
                records.append((*_fields(fe), str(v.source), fe.path in cached))
            else:
                fe = v
                records.append((*_fields(fe), None, False))
            writer.add(fe)
        files.append(records)
        trees.append(objects)
        objects.clear()
        batch.clear()
        ingestor.flush_cache()

    try:
        for path, v in merged:
            if isinstance(v, _Whole):
                listed, since, at = v.listed, v.since, v.listed.root
                stated = stat_folder(listed)
                taken = ingestor.take_folder(stated, since) if stated is not None else None
                if taken is not None:
                    if batch:
                        flush()
                    writer.add_folder(path, taken.tree, taken.size, taken.count)
                    continue
                if stated is not None:
                    hashing[path] = (at, stated.sig, stated.newest)
                    batch.extend(
                        StagedFile(f"{path}/{n}", os.path.join(at, n), since=since, stat=st)
                        for n, st in zip(listed.names, stated.stats, strict=True)
                    )
                else:
                    batch.extend(
                        StagedFile(f"{path}/{n}", os.path.join(at, n), since=since)
                        for n in listed.names
                    )
            else:
                batch.append(v)
            if len(batch) >= STREAM_BATCH:
                flush()
        if batch:
            flush()
        root, size, count = writer.finish()
        trees.append(objects)
    except BaseException:
        files.close()
        trees.close()
        raise
    return SpilledTree(root, size, count, files, trees, folders)


@dataclass(frozen=True)
class _Whole:
    """A folder of plain files the walk hands over as one item, with when its source folder
    was added (`StagedFile.since`)."""

    listed: Listed
    since: int


def _walk(
    folder: FolderSource, whole: bool
) -> Iterator[tuple[str, StagedFile | FileEntry | _Whole]]:
    for found in folder.walk_folders(whole=whole):
        if isinstance(found, Listed):
            yield found.path, _Whole(found, folder.added_ns)
        else:
            path, source = found
            yield path, StagedFile(path, source, since=folder.added_ns)


def _tree_order(item: tuple[str, object]) -> list[str]:
    return item[0].split("/")


def _fields(fe: FileEntry) -> tuple[str, str, int, str | None, dict[str, Any] | None]:
    return (fe.path, fe.digest, fe.size, fe.chunks, fe.ref)


def _store_and_commit(
    backend: Backend,
    project: str,
    draft: Draft,
    ingestor: Ingestor,
    built: BuiltTree | SpilledTree,
    run_id: str | None,
    aliases: list[str],
    all_tags: list[str],
    metadata: Any,
) -> Logged:
    try:
        backend.registry.resolve(project, draft.name, built.root)
        exists = True
    except NotFoundError:
        exists = False
    # the same version again: nothing to store unless objects were dropped since (gc, or
    # forgotten as damaged; a server tells no drop count, so its tree objects are asked for:
    # one per folder, a request per few thousand)
    if exists and not backend.object_store.generation() and not ingestor.trees_missing(built):
        ingestor.flush_cache()
        # hashing stored what the store said it lacks (a damaged file it forgot, or one a
        # server lost): send it, so that logging the data again mends the version
        backend.object_store.sync()
    else:
        # a new version, or one whose objects may have been dropped since (gc, or forgotten
        # as damaged): store what the store lacks from the user's files
        ingestor.store_tree(built)
        backend.object_store.sync()
        lost = ingestor.lost_since_stored(built)
        for _ in range(REPAIRS):  # a concurrent gc dropped what this log reused
            if not lost:
                break
            ingestor.repair(built)
            backend.object_store.sync()
            lost = ingestor.lost_since_stored(built)
        if lost:
            raise ConflictError(
                f"{len(lost)} stored object(s) this log reuses were removed by a concurrent "
                f"`cairn gc` {REPAIRS + 1} times in a row; nothing was logged, log again"
            )
    if ingestor.folders_dropped():
        raise _FoldersDropped
    info, created = backend.registry.commit_version(
        project,
        draft.name,
        draft.type,
        digest=built.root,
        size=built.size,
        file_count=built.file_count,
        description=draft.description,
        metadata=metadata,
        aliases=aliases,
        tags=all_tags,
        run_id=run_id,
    )
    ingestor.remember_folders(built)
    return Logged(info, created, ingestor.stats)


class _FoldersDropped(Exception):
    """A concurrent `cairn gc` dropped objects while a log took whole folders from an
    earlier one: what is below them is not known to be stored any more."""


__all__ = ["REPAIRS", "Draft", "Logged", "log_version"]
