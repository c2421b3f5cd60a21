"""`SqlParts`: the parts of distributed versions in SQL (table ``artifact_parts``), for the
embedded mode and the server. See `cairn.service.parts`."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.digest import is_digest
from cairn.core.names import check_artifact_name, check_project, check_type
from cairn.core.records import VersionInfo
from cairn.errors import ConflictError, InvalidInputError, InvalidNameError
from cairn.metadata.tables import Artifact, ArtifactPart, Project
from cairn.service.parts import PartInfo, PartRef, check_part_name
from cairn.service.sql.common import utcnow
from cairn.service.sql.projects import ensure_project
from cairn.service.sql.runs import find_run
from cairn.service.validate import check_int, check_str

if TYPE_CHECKING:
    from cairn.service.sql import SqlRegistry


def _check_digest(kind: str, digest: object) -> str:
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidInputError(
            f"invalid {kind} {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
        )
    return digest


def _info(row: ArtifactPart, project: str) -> PartInfo:
    return PartInfo(
        project=project,
        name=row.artifact,
        type=row.type,
        distributed_id=row.distributed_id,
        part=row.part,
        root=row.root,
        size=row.size,
        file_count=row.file_count,
        run_id=row.run_id,
        user=row.user,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _pending(s: Session, project_id: int, name: str, distributed_id: str) -> list[ArtifactPart]:
    return list(
        s.scalars(
            sa.select(ArtifactPart)
            .where(
                ArtifactPart.project_id == project_id,
                ArtifactPart.artifact == name,
                ArtifactPart.distributed_id == distributed_id,
            )
            .order_by(ArtifactPart.part)
        )
    )


def _project_id(s: Session, project: str) -> int | None:
    found: int | None = s.scalar(sa.select(Project.id).where(Project.name == project))
    return found


class SqlParts:
    """Parts of distributed versions, in the registry's database; finishing commits through
    the registry's own `commit_version` (same transaction)."""

    def __init__(self, registry: SqlRegistry) -> None:
        self.registry = registry
        self._engine = registry.engine

    def _write(self, work: Any) -> Any:
        from cairn.metadata.engine import transaction

        return transaction(self._engine, work, write=True)

    def _read(self, work: Any) -> Any:
        from cairn.metadata.engine import transaction

        return transaction(self._engine, work, write=False)

    def ensure_project(self, project: str) -> None:
        """Create the project when it does not exist (the server binds a part's objects to it
        before recording the part)."""
        check_project(project)
        self._write(lambda s: ensure_project(s, project))

    def upsert(
        self,
        project: str,
        name: str,
        type: str,
        *,
        distributed_id: str,
        part: str,
        root: str,
        size: int,
        file_count: int,
        run_id: str | None = None,
        user: str | None = None,
    ) -> PartInfo:
        check_project(project)
        check_artifact_name(name)
        check_type(type)
        check_part_name("distributed id", distributed_id)
        check_part_name("part id", part)
        _check_digest("part root", root)
        check_int("size", size)
        check_int("file_count", file_count)
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> PartInfo:
            run = find_run(s, run_id) if run_id is not None else None
            who = user if user is not None else (run.user if run is not None else None)
            proj = ensure_project(s, project)
            existing_type = s.scalar(
                sa.select(Artifact.type).where(
                    Artifact.project_id == proj.id, Artifact.name == name
                )
            )
            if existing_type is not None and existing_type != type:
                raise InvalidNameError(
                    f"artifact {project}/{name} already exists with type {existing_type!r}, "
                    f"not {type!r}: upsert it with type={existing_type!r}"
                )
            rows = _pending(s, proj.id, name, distributed_id)
            other = next((r for r in rows if r.type != type), None)
            if other is not None:
                raise InvalidNameError(
                    f"part {other.part!r} of {project}/{name} (distributed id "
                    f"{distributed_id!r}) has type {other.type!r}, not {type!r}"
                )
            now = utcnow()
            row = next((r for r in rows if r.part == part), None)
            if row is None:
                row = ArtifactPart(
                    project_id=proj.id,
                    artifact=name,
                    type=type,
                    distributed_id=distributed_id,
                    part=part,
                    created_at=now,
                )
                s.add(row)
            row.root = root
            row.size = size
            row.file_count = file_count
            row.run_id = run_id
            row.user = who
            row.updated_at = now
            s.flush()
            return _info(row, project)

        result: PartInfo = self._write(work)
        return result

    def list(self, project: str, name: str, *, distributed_id: str) -> list[PartInfo]:
        check_project(project)
        check_artifact_name(name)
        check_part_name("distributed id", distributed_id)

        def work(s: Session) -> list[PartInfo]:
            project_id = _project_id(s, project)
            if project_id is None:
                return []
            return [_info(r, project) for r in _pending(s, project_id, name, distributed_id)]

        result: list[PartInfo] = self._read(work)
        return result

    def finish(
        self,
        project: str,
        name: str,
        type: str,
        *,
        distributed_id: str,
        parts: Sequence[PartRef],
        digest: str,
        size: int,
        file_count: int,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
    ) -> tuple[VersionInfo, bool]:
        check_project(project)
        check_artifact_name(name)
        check_part_name("distributed id", distributed_id)
        wanted: dict[str, str] = {}
        for ref in parts:
            check_part_name("part id", ref.part)
            wanted[ref.part] = _check_digest("part root", ref.root)

        def remove_parts(s: Session) -> None:
            project_id = _project_id(s, project)
            rows = [] if project_id is None else _pending(s, project_id, name, distributed_id)
            found = {r.part: r.root for r in rows}
            if found != wanted:
                changed = sorted(
                    p for p in found.keys() | wanted.keys() if found.get(p) != wanted.get(p)
                )
                raise ConflictError(
                    f"the parts of {project}/{name} (distributed id {distributed_id!r}) changed "
                    f"while finishing (parts {', '.join(map(repr, changed[:10]))}); nothing was "
                    "committed: finish again"
                )
            if rows:
                s.execute(sa.delete(ArtifactPart).where(ArtifactPart.id.in_([r.id for r in rows])))

        return self.registry.commit_version(
            project,
            name,
            type,
            digest=digest,
            size=size,
            file_count=file_count,
            description=description,
            metadata=metadata,
            aliases=aliases,
            tags=tags,
            run_id=run_id,
            user=user,
            within=remove_parts,
        )

    def discard(self, project: str, name: str, *, distributed_id: str) -> int:
        check_project(project)
        check_artifact_name(name)
        check_part_name("distributed id", distributed_id)

        def work(s: Session) -> int:
            project_id = _project_id(s, project)
            if project_id is None:
                return 0
            rows = _pending(s, project_id, name, distributed_id)
            if rows:
                s.execute(sa.delete(ArtifactPart).where(ArtifactPart.id.in_([r.id for r in rows])))
            return len(rows)

        result: int = self._write(work)
        return result

    # --- for gc (`cairn.service.liveness`) ----------------------------------------------------
    def pending_roots(self) -> builtins.list[str]:
        """The root of every pending part, in every project: live for gc while pending."""

        def work(s: Session) -> builtins.list[str]:
            return sorted(s.scalars(sa.select(ArtifactPart.root).distinct()))

        result: builtins.list[str] = self._read(work)
        return result

    def expire(self, grace_seconds: float, *, dry_run: bool = False) -> int:
        """Remove the parts not upserted for longer than ``grace_seconds`` (abandoned: their
        distributed version was never finished); returns how many (would be) removed."""
        cutoff = utcnow() - timedelta(seconds=grace_seconds)

        def work(s: Session) -> int:
            stale = sa.select(ArtifactPart.id).where(ArtifactPart.updated_at < cutoff)
            ids = list(s.scalars(stale))
            if ids and not dry_run:
                s.execute(sa.delete(ArtifactPart).where(ArtifactPart.id.in_(ids)))
            return len(ids)

        result: int = self._write(work)
        return result


__all__ = ["SqlParts"]
