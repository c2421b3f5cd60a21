"""Artifacts and their versions as rows: finding them (with helpful not-found messages),
creating an artifact on first log, and building `VersionInfo`/`ArtifactInfo` records with a
fixed number of queries per list."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.names import check_artifact_name, check_project, check_type, is_version_label
from cairn.core.records import ArtifactInfo, VersionInfo
from cairn.errors import ArtifactNotFoundError, ConflictError, InvalidNameError
from cairn.metadata.engine import lock_artifact
from cairn.metadata.tables import (
    Alias,
    Artifact,
    ArtifactTag,
    History,
    Project,
    Version,
)
from cairn.service.sql.common import (
    COMMITTED,
    DELETED,
    SqlBase,
    chunks,
    insert_ignore,
    utcnow,
)
from cairn.service.sql.lookups import (
    NEWEST_LIVE,
    artifact_infos,
    quick_artifacts,
    version_labels,
)
from cairn.service.sql.projects import find_project
from cairn.service.sql.runs import find_run
from cairn.service.validate import check_int, check_page, check_str, check_tags, listing

_SHOWN = 5  # names listed in a not-found message


def find_artifact(s: Session, project: str, name: str) -> tuple[Project, Artifact]:
    found = s.execute(
        sa.select(Project, Artifact)
        .join(Artifact, Artifact.project_id == Project.id)
        .where(Project.name == project, Artifact.name == name)
    ).one_or_none()
    if found is not None:  # one query on the common path; the rest builds the message
        return found[0], found[1]
    proj = find_project(s, project)
    names = list(
        s.scalars(
            sa.select(Artifact.name)
            .where(Artifact.project_id == proj.id)
            .order_by(Artifact.name)
            .limit(1000)
        )
    )
    if not names:
        raise ArtifactNotFoundError(
            f"artifact {name!r} does not exist in project {project!r}, which has no "
            "artifacts yet: log it first"
        )
    total = s.scalar(
        sa.select(sa.func.count()).select_from(Artifact).where(Artifact.project_id == proj.id)
    )
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ArtifactNotFoundError(
        f"artifact {name!r} does not exist in project {project!r}.{hint} "
        f"Artifacts there: {listing(names, total or 0)}."
    )


def ensure_artifact(
    s: Session, project: Project, name: str, type: str, description: str
) -> Artifact:
    query = sa.select(Artifact).where(Artifact.project_id == project.id, Artifact.name == name)
    artifact = s.scalars(query).one_or_none()
    if artifact is None:
        now = utcnow()
        values = {
            "project_id": project.id,
            "name": name,
            "type": type,
            "description": description,
            "created_at": now,
            "updated_at": now,
        }
        insert_ignore(s, Artifact, values, ["project_id", "name"])
        artifact = s.scalars(query.execution_options(populate_existing=True)).one()
    lock_artifact(s, artifact.id)
    if artifact.type != type:
        raise InvalidNameError(
            f"artifact {project.name}/{name} already exists with type {artifact.type!r}, "
            f"not {type!r}: log it with type={artifact.type!r}, or choose another name"
        )
    return artifact


def find_version(s: Session, version_id: int) -> Version:
    check_int("version id", version_id)
    version = s.get(Version, version_id)
    if version is None:
        raise ArtifactNotFoundError(
            f"no artifact version with id {version_id}: check the id, or resolve the version "
            "by name (resolve(project, name, 'latest'))"
        )
    return version


def version_label(s: Session, version: Version) -> str:
    project, name = s.execute(
        sa.select(Project.name, Artifact.name)
        .join(Artifact, Artifact.project_id == Project.id)
        .where(Artifact.id == version.artifact_id)
    ).one()
    return f"{project}/{name}:v{version.version}"


def version_infos(s: Session, versions: Sequence[Version]) -> list[VersionInfo]:
    """VersionInfo for each version, with a fixed number of queries for the whole list."""
    if not versions:
        return []
    ids = [v.id for v in versions]
    artifact_ids = sorted({v.artifact_id for v in versions})
    artifacts: dict[int, tuple[str, str, str]] = {}
    latest: dict[int, int] = {}
    aliases: dict[int, list[str]] = {}
    tags: dict[int, list[str]] = {}
    for chunk in chunks(artifact_ids):
        for aid, name, type_, project, latest_version in s.execute(
            sa.select(Artifact.id, Artifact.name, Artifact.type, Project.name, NEWEST_LIVE)
            .join(Project, Project.id == Artifact.project_id)
            .where(Artifact.id.in_(chunk))
        ):
            artifacts[aid] = (project, name, type_)
            if latest_version is not None:
                latest[aid] = latest_version
    for chunk in chunks(ids, 250):  # two IN lists per statement
        found_aliases, found_tags = version_labels(s, chunk)
        aliases.update(found_aliases)
        tags.update(found_tags)
    result = []
    for v in versions:
        project, name, type_ = artifacts[v.artifact_id]
        is_latest = v.state == COMMITTED and latest.get(v.artifact_id) == v.version
        result.append(
            VersionInfo(
                id=v.id,
                project=project,
                name=name,
                type=type_,
                version=v.version,
                digest=v.digest,
                size=v.size,
                file_count=v.file_count,
                description=v.description,
                metadata=v.meta,
                aliases=(["latest"] if is_latest else []) + aliases[v.id],
                tags=tags[v.id],
                created_at=v.created_at,
                run_id=v.run_id,
                state=cast(Literal["committed", "deleted"], v.state),
            )
        )
    return result


def missing_ref_message(s: Session, project: str, artifact: Artifact, ref: str) -> str:
    where = f"{project}/{artifact.name}"
    live = s.execute(
        sa.select(
            sa.func.count(), sa.func.min(Version.version), sa.func.max(Version.version)
        ).where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
    ).one()
    count, first, last = live
    if not count:
        return (
            f"{where} has no versions left (all were deleted), so {ref!r} does not exist: "
            "log a new version"
        )
    alias_rows = s.execute(
        sa.select(Alias.alias, Version.version)
        .join(Version, Version.id == Alias.version_id)
        .where(Alias.artifact_id == artifact.id)
        .order_by(Alias.alias)
        .limit(_SHOWN + 1)
    ).all()
    aliases = ", ".join(f"{a} (v{n})" for a, n in alias_rows[:_SHOWN])
    if len(alias_rows) > _SHOWN:
        aliases += ", ..."
    what = f"{count} version{'s' if count != 1 else ''} between v{first} and v{last}"
    if count == 1:
        what = f"1 version, v{last}"
    deleted = ""
    if is_version_label(ref):
        state = s.scalar(
            sa.select(Version.state).where(
                Version.artifact_id == artifact.id, Version.version == int(ref[1:])
            )
        )
        if state == DELETED:
            deleted = f" ({ref} was deleted)"
    return (
        f"{where} has no version or alias {ref!r}{deleted}. It has {what} (latest is v{last})"
        + (f"; aliases: {aliases}" if aliases else "; no aliases")
        + ". Use 'latest', a version such as 'v0', an alias or a digest."
    )


def _record(
    s: Session,
    artifact: Artifact,
    field: str,
    old: str,
    new: str,
    at: datetime,
    run_id: str | None,
    user: str | None,
) -> None:
    """A rename or a change of type, in the history of every version of the artifact (its
    versions' names and types change with it, deleted ones too)."""
    ids = s.scalars(sa.select(Version.id).where(Version.artifact_id == artifact.id)).all()
    for batch in chunks(list(ids)):
        s.execute(
            sa.insert(History),
            [
                {
                    "version_id": vid,
                    "field": field,
                    "old": old,
                    "new": new,
                    "at": at,
                    "run_id": run_id,
                    "user": user,
                }
                for vid in batch
            ],
        )


class ArtifactsMixin(SqlBase):
    def get_artifact(self, project: str, name: str) -> ArtifactInfo:
        check_project(project)
        check_artifact_name(name)

        def work(s: Session) -> ArtifactInfo:
            proj, artifact = find_artifact(s, project, name)
            return artifact_infos(s, proj.name, [artifact.id])[0]

        return self._read(work)

    def update_artifact(
        self,
        project: str,
        name: str,
        *,
        new_name: str | None = None,
        type: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> ArtifactInfo:
        check_project(project)
        check_artifact_name(name)
        if user is not None:
            check_str("user", user)
        if new_name is not None:
            check_artifact_name(new_name)
        if type is not None:
            check_type(type)
        if description is not None:
            check_str("description", description)
        want_tags = check_tags(tags) if tags is not None else None

        def work(s: Session) -> ArtifactInfo:
            if run_id is not None:
                find_run(s, run_id)
            proj, artifact = find_artifact(s, project, name)
            lock_artifact(s, artifact.id)
            s.refresh(artifact)
            now = utcnow()
            changed = False
            if new_name is not None and new_name != artifact.name:
                taken = s.scalar(
                    sa.select(Artifact.id).where(
                        Artifact.project_id == proj.id, Artifact.name == new_name
                    )
                )
                if taken is not None:
                    raise ConflictError(
                        f"artifact {project}/{new_name} already exists: choose another name "
                        f"for {project}/{name}"
                    )
                _record(s, artifact, "name", artifact.name, new_name, now, run_id, user)
                artifact.name = new_name
                changed = True
            if type is not None and type != artifact.type:
                _record(s, artifact, "type", artifact.type, type, now, run_id, user)
                artifact.type = type
                changed = True
            if description is not None and description != artifact.description:
                artifact.description = description
                changed = True
            if want_tags is not None:
                current = set(
                    s.scalars(
                        sa.select(ArtifactTag.tag).where(ArtifactTag.artifact_id == artifact.id)
                    )
                )
                added, removed = set(want_tags) - current, current - set(want_tags)
                if removed:
                    s.execute(
                        sa.delete(ArtifactTag).where(
                            ArtifactTag.artifact_id == artifact.id, ArtifactTag.tag.in_(removed)
                        )
                    )
                if added:
                    s.execute(
                        sa.insert(ArtifactTag),
                        [{"artifact_id": artifact.id, "tag": t} for t in sorted(added)],
                    )
                changed |= bool(added or removed)
            if changed:
                artifact.updated_at = now
            s.flush()
            return artifact_infos(s, proj.name, [artifact.id])[0]

        return self._write(work)

    def list_artifacts(
        self,
        project: str,
        *,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ArtifactInfo]:
        check_project(project)
        if type is not None:
            check_type(type)
        if search is not None:
            check_str("search", search)
        check_page(limit, offset)

        def work(s: Session) -> list[ArtifactInfo]:
            found = quick_artifacts(s, project, type, search, limit, offset)
            if not found:
                find_project(s, project)  # tells a missing project from an empty page
            return found

        return self._read(work)
