"""Distributed versions over a `Backend`: a worker stores its part, a finisher commits the union.

`store_part` (each worker, `Run.upsert_artifact`): the part's files are hashed and their missing
objects stored, straight into the store (a folder, a bucket, or a server: through signed URLs
when it offers them), with the tree of the part; then the part is recorded
(`Parts.upsert`). Nothing is committed.

`finish_parts` (one process, `Run.finish_artifact`): the pending parts are listed (and checked
against ``expected_parts``), their trees merged (`cairn.objects.treemerge`: only folders that
several parts share are rewritten; no file bytes move), the merged tree objects stored, and the
version committed with the parts removed in one transaction (`Parts.finish`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cairn.core import names
from cairn.core.gcpause import gc_relaxed
from cairn.errors import (
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    MissingPartsError,
)
from cairn.objects import tree, treemerge
from cairn.objects.ingest import IngestStats, StagedFile
from cairn.objects.tree import FileEntry
from cairn.sdk.backend import Backend
from cairn.sdk.log_version import REPAIRS, Draft, Logged
from cairn.sdk.metadata import stored as stored_metadata
from cairn.sdk.progress import enabled as progress_enabled
from cairn.sdk.progress import progress_bar
from cairn.service.parts import PartInfo, PartRef, check_part_name


@dataclass
class StoredPart:
    """What a worker stored: the part as recorded, and what storing it wrote."""

    info: PartInfo
    stats: IngestStats


@dataclass
class Finished:
    """The version a finish made (or found) and the parts it was made of."""

    logged: Logged
    parts: list[PartInfo]


def _aliases(aliases: list[str]) -> list[str]:
    """The aliases to set on the finished version (as `log_version` checks them): each
    checked, duplicates and 'latest' dropped."""
    if isinstance(aliases, str):
        raise InvalidInputError("aliases are a list, e.g. aliases=['best']")
    out = [a for a in dict.fromkeys(aliases) if a != "latest"]
    for a in out:
        names.check_alias(a)
    return out


def default_part_id(root: str) -> str:
    """A part's id when the worker gives none: its content (the same files upserted twice are
    one part; declare ids to have a retried task replace what it sent before)."""
    return root.removeprefix("blake3:")


def store_part(
    backend: Backend,
    project: str,
    draft: Draft,
    *,
    distributed_id: str,
    part: str | None = None,
    run_id: str | None = None,
) -> StoredPart:
    """Store the draft's files and record them as one part (see the module docstring). A
    failure leaves none of its objects behind to be indexed later."""
    try:
        return _store_part(
            backend, project, draft, distributed_id=distributed_id, part=part, run_id=run_id
        )
    except BaseException:
        backend.object_store.discard()
        raise


@gc_relaxed
def _store_part(
    backend: Backend,
    project: str,
    draft: Draft,
    *,
    distributed_id: str,
    part: str | None,
    run_id: str | None,
) -> StoredPart:
    names.check_project(project)
    names.check_artifact_name(draft.name)
    names.check_type(draft.type)
    check_part_name("distributed id", distributed_id)
    if part is not None:
        check_part_name("part id", part)
    entries = _draft_files(draft)
    staged = [v for v in entries if isinstance(v, StagedFile)]
    known = [v for v in entries if isinstance(v, FileEntry)]
    total = 0
    if progress_enabled():
        for sf in staged:
            try:
                total += os.stat(sf.source).st_size
            except OSError:
                pass  # reported with a clear message by the ingestor
    with progress_bar(f"storing {draft.name} part", len(staged), total) as advance:
        ingestor = backend.ingestor(advance)
        hashed = ingestor.hash_files(staged) + known
    built = tree.build(hashed)
    ingestor.store_tree(built)
    backend.object_store.sync()
    lost = ingestor.lost_since_stored(built)
    for _ in range(REPAIRS):  # a concurrent gc dropped what this part reuses
        if not lost:
            break
        ingestor.repair(built)
        backend.object_store.sync()
        lost = ingestor.lost_since_stored(built)
    if lost:
        raise ConflictError(
            f"{len(lost)} stored object(s) this part reuses were removed by a concurrent "
            f"`cairn gc` {REPAIRS + 1} times in a row; nothing was recorded, upsert again"
        )
    info = backend.parts.upsert(
        project,
        draft.name,
        draft.type,
        distributed_id=distributed_id,
        part=part if part is not None else default_part_id(built.root),
        root=built.root,
        size=built.size,
        file_count=built.file_count,
        run_id=run_id,
    )
    return StoredPart(info, ingestor.stats)


def _draft_files(draft: Draft) -> list[StagedFile | FileEntry]:
    """Every file of the draft: its single files and those of folders it holds whole (walked
    now: a part is one worker's share, hashed in one go)."""
    out: list[StagedFile | FileEntry] = list(draft.entries)
    for folder in getattr(draft, "folders", None) or []:
        out.extend(StagedFile(path, source) for path, source in folder.walk())
    return out


def _check_arrived(
    project: str,
    name: str,
    distributed_id: str,
    parts: list[PartInfo],
    expected: Sequence[str] | None,
) -> None:
    arrived = [p.part for p in parts]
    where = f"{project}/{name} (distributed id {distributed_id!r})"
    if expected is not None:
        if isinstance(expected, str):
            raise InvalidInputError("expected_parts is a list of part ids, e.g. ['0', '1']")
        wanted = [str(p) for p in expected]
        missing = sorted(set(wanted) - set(arrived))
        if missing:
            shown = ", ".join(map(repr, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise MissingPartsError(
                f"{len(missing)} of the {len(set(wanted))} expected parts of {where} have not "
                f"arrived: {shown} ({len(arrived)} arrived); nothing was committed: upsert "
                "them (run the failed workers again) and finish again",
                missing=missing,
                arrived=arrived,
            )
    if not parts:
        raise MissingPartsError(
            f"no part of {where} has arrived: upsert_artifact(..., distributed_id="
            f"{distributed_id!r}) from the workers first",
            missing=[str(p) for p in expected or []],
            arrived=[],
        )


def finish_parts(
    backend: Backend,
    project: str,
    draft: Draft,
    *,
    distributed_id: str,
    run_id: str | None,
    aliases: list[str],
    tags: list[str],
    expected_parts: Sequence[str] | None = None,
) -> Finished:
    """Commit the pending parts as one version (see the module docstring); a draft with files
    of its own is upserted as one more part first."""
    check_part_name("distributed id", distributed_id)
    aliases = _aliases([*draft.aliases, *aliases])
    all_tags = list(dict.fromkeys([*draft.tags, *tags]))
    for t in all_tags:
        names.check_tag(t)
    metadata = stored_metadata(draft.metadata)
    if not isinstance(draft.description, str):
        raise InvalidInputError(
            f"description must be a string, not {type(draft.description).__name__}"
        )
    if draft.entries or getattr(draft, "folders", None):
        store_part(backend, project, draft, distributed_id=distributed_id, run_id=run_id)
    for _ in range(REPAIRS + 1):
        parts = backend.parts.list(project, draft.name, distributed_id=distributed_id)
        _check_arrived(project, draft.name, distributed_id, parts, expected_parts)
        other = next((p for p in parts if p.type != draft.type), None)
        if other is not None:
            raise InvalidNameError(
                f"part {other.part!r} of {project}/{draft.name} has type {other.type!r}, not "
                f"{draft.type!r}: finish it with type={other.type!r}"
            )
        merged = _merge_and_store(backend, parts)
        merged.close()  # its objects are stored; what the finish needs is the root
        try:
            info, created = backend.parts.finish(
                project,
                draft.name,
                draft.type,
                distributed_id=distributed_id,
                parts=[PartRef(p.part, p.root) for p in parts],
                digest=merged.root,
                size=merged.size,
                file_count=merged.file_count,
                description=draft.description,
                metadata=metadata,
                aliases=aliases,
                tags=all_tags,
                run_id=run_id,
            )
        except ConflictError:
            continue  # a part arrived (or was replaced) while merging: merge again
        return Finished(Logged(info, created, IngestStats()), parts)
    raise ConflictError(
        f"parts of {project}/{draft.name} kept arriving while finishing; finish again once "
        "every worker is done"
    )


@gc_relaxed
def _merge_and_store(backend: Backend, parts: list[PartInfo]) -> treemerge.MergedTree:
    """Merge the parts' trees and store the tree objects the merge wrote (children first);
    what a concurrent gc dropped meanwhile is stored again. The caller closes the result."""
    store = backend.object_store
    merged = treemerge.merge([(p.part, p.root) for p in parts], store.get)
    try:
        for _ in range(REPAIRS + 1):
            lacking = store.missing(merged.digests)
            for digest, body in merged.bodies():  # children before parents
                if digest in lacking:
                    store.put(digest, body)
            store.sync()
            if not store.missing(merged.digests):
                return merged
    except BaseException:
        merged.close()
        store.discard()
        raise
    merged.close()
    raise ConflictError(
        "tree objects this finish wrote were removed by a concurrent `cairn gc` several times "
        "in a row; nothing was committed, finish again"
    )


__all__ = ["Finished", "StoredPart", "default_part_id", "finish_parts", "store_part"]
