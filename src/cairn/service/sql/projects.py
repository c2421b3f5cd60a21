"""Projects: listing them, finding one (with a did-you-mean error), creating one on first use."""

from __future__ import annotations

import difflib

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.records import ProjectInfo
from cairn.errors import ProjectNotFoundError
from cairn.metadata.tables import Artifact, Project, Run
from cairn.service.sql.common import SqlBase, insert_ignore, utcnow
from cairn.service.validate import listing


def find_project(s: Session, name: str) -> Project:
    project = s.scalars(sa.select(Project).where(Project.name == name)).one_or_none()
    if project is not None:
        return project
    names = list(s.scalars(sa.select(Project.name).order_by(Project.name).limit(1000)))
    total = s.scalar(sa.select(sa.func.count()).select_from(Project)) or 0
    if not names:
        raise ProjectNotFoundError(
            f"project {name!r} does not exist, and there are no projects yet: "
            "log a run or an artifact to create one"
        )
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ProjectNotFoundError(
        f"project {name!r} does not exist.{hint} Projects: {listing(names, total)}."
    )


def ensure_project(s: Session, name: str, *, lock: bool = False) -> Project:
    query = sa.select(Project).where(Project.name == name)
    if lock:
        # FOR NO KEY UPDATE: serialises run creation in the project without blocking
        # inserts that merely reference it
        query = query.with_for_update(key_share=True)
    project = s.scalars(query).one_or_none()
    if project is None:
        insert_ignore(s, Project, {"name": name, "created_at": utcnow()}, ["name"])
        project = s.scalars(query.execution_options(populate_existing=True)).one()
    return project


def project_name(s: Session, project_id: int) -> str:
    return s.execute(sa.select(Project.name).where(Project.id == project_id)).scalar_one()


class ProjectsMixin(SqlBase):
    def list_projects(self) -> list[ProjectInfo]:
        def work(s: Session) -> list[ProjectInfo]:
            artifacts = (
                sa.select(sa.func.count())
                .where(Artifact.project_id == Project.id)
                .scalar_subquery()
            )
            runs = sa.select(sa.func.count()).where(Run.project_id == Project.id).scalar_subquery()
            rows = s.execute(
                sa.select(Project.name, Project.created_at, artifacts, runs).order_by(Project.name)
            )
            return [
                ProjectInfo(name=n, created_at=c, artifact_count=a, run_count=r)
                for n, c, a, r in rows
            ]

        return self._read(work)
