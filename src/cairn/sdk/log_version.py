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

import os
from dataclasses import dataclass, field
from typing import Any

from cairn.core import names
from cairn.core.gcpause import gc_paused
from cairn.core.records import VersionInfo
from cairn.errors import ConflictError, InvalidInputError, InvalidNameError, NotFoundError
from cairn.objects import tree
from cairn.objects.ingest import IngestStats, StagedFile
from cairn.objects.tree import FileEntry
from cairn.sdk.backend import Backend
from cairn.sdk.metadata import stored as stored_metadata
from cairn.sdk.progress import enabled as progress_enabled
from cairn.sdk.progress import progress_bar

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


@gc_paused
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
        backend.registry.resolve(project, draft.name, built.root)
        exists = True
    except NotFoundError:
        exists = False
    # the same version again: nothing to store unless objects were dropped since (gc, or
    # forgotten as damaged; a server tells no drop count, so its tree objects are asked for:
    # one per folder, a request per few thousand)
    if (
        exists
        and not backend.object_store.generation()
        and not backend.object_store.missing(built.objects)
    ):
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
    return Logged(info, created, ingestor.stats)


__all__ = ["REPAIRS", "Draft", "Logged", "log_version"]
