"""The hottest reads, resolving `project/name:ref` and listing a project's artifacts, as
prebuilt Core statements.

A server under load spends most of its time on these (every `use_artifact`, download and
dashboard page starts with one). Built once at import and cached compiled by SQLAlchemy, each
answers in two round trips without building ORM objects: a resolve reads the version with its
artifact, project and the artifact's newest version number, then its aliases and tags; a
listing reads the page of artifacts with their live version count, newest version and its
size, then their tags. They find only what exists: when they find nothing, the caller takes
the ORM path, which tells *why* (no such project, artifact or version, with suggestions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from cairn.core.names import is_version_label
from cairn.core.records import ArtifactInfo, VersionInfo
from cairn.metadata.tables import Alias, Artifact, ArtifactTag, Project, Version, VersionTag
from cairn.service.sql.common import COMMITTED, escape_like

_newest = aliased(Version)
NEWEST_LIVE = (  # an artifact's newest live version number, per row of Artifact
    sa.select(sa.func.max(_newest.version))
    .where(_newest.artifact_id == Artifact.id, _newest.state == COMMITTED)
    .scalar_subquery()
)
_BASE = (
    sa.select(
        Version.id,
        Version.version,
        Version.digest,
        Version.size,
        Version.file_count,
        Version.description,
        Version.meta,
        Version.created_at,
        Version.run_id,
        Artifact.name,
        Artifact.type,
        Project.name,
        NEWEST_LIVE,
    )
    .join(Artifact, Artifact.id == Version.artifact_id)
    .join(Project, Project.id == Artifact.project_id)
    .where(
        Project.name == sa.bindparam("project"),
        Artifact.name == sa.bindparam("name"),
        Version.state == COMMITTED,
    )
)
_LATEST = _BASE.order_by(Version.version.desc()).limit(1)
_NUMBER = _BASE.where(Version.version == sa.bindparam("number"))
_DIGEST = (
    _BASE.where(Version.digest == sa.bindparam("ref")).order_by(Version.version.desc()).limit(1)
)
_ALIAS = _BASE.join(
    Alias, sa.and_(Alias.version_id == Version.id, Alias.artifact_id == Artifact.id)
).where(Alias.alias == sa.bindparam("ref"))


def _labels(matches: Callable[[Any], Any]) -> sa.CompoundSelect[int, str, str]:
    """(version id, "a" or "t", alias or tag) of the versions ``matches`` picks, by label."""
    return sa.union_all(
        sa.select(Alias.version_id, sa.literal("a").label("kind"), Alias.alias.label("label"))
        .where(matches(Alias.version_id)),
        sa.select(VersionTag.version_id, sa.literal("t"), VersionTag.tag)
        .where(matches(VersionTag.version_id)),
    ).order_by("label")  # fmt: skip


# one version (a resolve: a plain comparison, no list to expand per call), or many
_LABELS_OF_ONE = _labels(lambda column: column == sa.bindparam("id"))
_LABELS_OF_MANY = _labels(lambda column: column.in_(sa.bindparam("ids", expanding=True)))


def version_labels(s: Session, ids: list[int]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """(aliases, tags) of each of the versions ``ids`` (at most a few hundred), sorted."""
    aliases: dict[int, list[str]] = {i: [] for i in ids}
    tags: dict[int, list[str]] = {i: [] for i in ids}
    if len(ids) == 1:
        rows = s.execute(_LABELS_OF_ONE, {"id": ids[0]})
    else:
        rows = s.execute(_LABELS_OF_MANY, {"ids": ids})
    for vid, kind, label in rows:
        (aliases if kind == "a" else tags)[vid].append(label)
    return aliases, tags


def quick_resolve(s: Session, project: str, name: str, ref: str) -> VersionInfo | None:
    """The live version ``ref`` names (a checked 'latest', 'vN', digest or alias), or None
    when there is none (the caller then explains why)."""
    params: dict[str, Any] = {"project": project, "name": name, "ref": ref}
    if ref == "latest":
        statement = _LATEST
    elif is_version_label(ref):
        statement, params["number"] = _NUMBER, int(ref[1:])
    elif ref.startswith("blake3:"):
        statement = _DIGEST
    else:
        statement = _ALIAS
    row = s.execute(statement, params).first()
    if row is None:
        return None
    (vid, number, digest, size, files, description, meta, created, run_id, artifact, type_,
     project_name, newest) = row  # fmt: skip
    aliases, tags = version_labels(s, [vid])
    return VersionInfo(
        id=vid,
        project=project_name,
        name=artifact,
        type=type_,
        version=number,
        digest=digest,
        size=size,
        file_count=files,
        description=description,
        metadata=meta,
        aliases=(["latest"] if number == newest else []) + aliases[vid],
        tags=tags[vid],
        created_at=created,
        run_id=run_id,
        state="committed",
    )


_live = aliased(Version)
_COUNT = (
    sa.select(sa.func.count())
    .where(_live.artifact_id == Artifact.id, _live.state == COMMITTED)
    .scalar_subquery()
)
_sized = aliased(Version)
_SIZE = (  # the newest live version's size
    sa.select(_sized.size)
    .where(_sized.artifact_id == Artifact.id, _sized.state == COMMITTED)
    .order_by(_sized.version.desc())
    .limit(1)
    .scalar_subquery()
)
_ARTIFACT_ROWS = sa.select(
    Artifact.id,
    Artifact.name,
    Artifact.type,
    Artifact.created_at,
    Artifact.updated_at,
    Artifact.description,
    _COUNT,
    NEWEST_LIVE,
    _SIZE,
)
_ARTIFACTS = _ARTIFACT_ROWS.join(Project, Project.id == Artifact.project_id).where(
    Project.name == sa.bindparam("project")
)
_ARTIFACTS_BY_ID = _ARTIFACT_ROWS.where(Artifact.id.in_(sa.bindparam("ids", expanding=True)))
_ARTIFACT_TAGS = (
    sa.select(ArtifactTag.artifact_id, ArtifactTag.tag)
    .where(ArtifactTag.artifact_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(ArtifactTag.tag)
)


@functools.cache
def _artifact_page(by_type: bool, by_search: bool) -> sa.Select[Any]:
    """The listing with its filters as parameters: one statement object per combination, so
    SQLAlchemy computes its cache key once, not on every request."""
    statement = _ARTIFACTS
    if by_type:
        statement = statement.where(Artifact.type == sa.bindparam("type"))
    if by_search:
        pattern: sa.BindParameter[str] = sa.bindparam("pattern")
        statement = statement.where(
            sa.or_(
                Artifact.name.ilike(pattern, escape="\\"),
                Artifact.description.ilike(pattern, escape="\\"),
            )
        )
    return (
        statement.order_by(Artifact.name)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .offset(sa.bindparam("offset", type_=sa.Integer))
    )


def quick_artifacts(
    s: Session, project: str, type: str | None, search: str | None, limit: int, offset: int
) -> list[ArtifactInfo]:
    """A page of the project's artifacts by name (checked filters and window); empty also
    when the project does not exist (the caller tells which)."""
    statement = _artifact_page(type is not None, bool(search))
    params = {"project": project, "type": type, "limit": limit, "offset": offset}
    if search:
        params["pattern"] = "%" + escape_like(search) + "%"
    return _artifact_infos(s, project, s.execute(statement, params).all())


def artifact_infos(s: Session, project: str, ids: list[int]) -> list[ArtifactInfo]:
    """ArtifactInfo of the project's artifacts ``ids`` (at most a few hundred), in that order."""
    rows = {row[0]: row for row in s.execute(_ARTIFACTS_BY_ID, {"ids": ids})}
    return _artifact_infos(s, project, [rows[i] for i in ids])


def _artifact_infos(s: Session, project: str, rows: Sequence[Any]) -> list[ArtifactInfo]:
    tags: dict[int, list[str]] = {row[0]: [] for row in rows}
    if rows:
        for aid, tag in s.execute(_ARTIFACT_TAGS, {"ids": list(tags)}):
            tags[aid].append(tag)
    return [
        ArtifactInfo(
            project=project,
            name=name,
            type=type_,
            created_at=created,
            updated_at=updated,
            version_count=count,
            latest_version=top,
            latest_size=size,
            description=description,
            tags=tags[aid],
        )
        for aid, name, type_, created, updated, description, count, top, size in rows
    ]


__all__ = [
    "NEWEST_LIVE",
    "artifact_infos",
    "quick_artifacts",
    "quick_resolve",
    "version_labels",
]
