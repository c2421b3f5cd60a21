"""Lineage: the edges between runs and the versions they used (input) or logged (output), and
the graph walks over them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.records import LineageEdge, LineageGraph, LineageNode, RunInfo, VersionInfo
from cairn.errors import InvalidInputError
from cairn.metadata.tables import Artifact, Project, Run, RunArtifact, Version
from cairn.service.registry import Direction
from cairn.service.sql.artifacts import find_version, version_infos
from cairn.service.sql.common import INPUT, OUTPUT, SqlBase, chunks, insert_ignore, utcnow
from cairn.service.sql.projects import project_name
from cairn.service.sql.runs import find_run, run_info
from cairn.service.validate import check_int


def add_edge(s: Session, run_id: str, version_id: int, direction: str, at: datetime) -> bool:
    """Record the edge (once); True when it is new."""
    values = {"run_id": run_id, "version_id": version_id, "direction": direction, "at": at}
    return insert_ignore(s, RunArtifact, values, ["run_id", "version_id", "direction"])


def _edges(direction: str) -> sa.Select[str, int]:
    """(run, version) edges of ``direction``. An output edge counts only from the run that
    made the version: a run that logged identical content later re-logged it (its outputs and
    the version's history say so) but is not drawn as another producer."""
    query = sa.select(RunArtifact.run_id, RunArtifact.version_id).where(
        RunArtifact.direction == direction
    )
    if direction == OUTPUT:
        query = query.join(
            Version,
            sa.and_(Version.id == RunArtifact.version_id, Version.run_id == RunArtifact.run_id),
        )
    return query


def _walk(
    s: Session,
    start: int,
    *,
    upstream: bool,
    depth: int | None,
    depths: dict[str, int],
    edges: set[tuple[str, str]],
) -> None:
    """Breadth-first over lineage edges from version `start`, one query per level.

    Downstream: version -> runs that used it (input edges) -> versions those runs logged
    (output edges) -> ... Upstream follows the same edges backwards. Edges point the way data
    flows (version -> run for inputs, run -> version for outputs)."""
    sign = -1 if upstream else 1
    versions: set[int] = {start}
    runs: set[str] = set()
    level = 0
    while (versions or runs) and (depth is None or level < depth):
        level += 1
        next_versions: set[int] = set()
        next_runs: set[str] = set()
        if versions:
            # from versions: upstream to the runs that logged them, downstream to users
            wanted = OUTPUT if upstream else INPUT
            for chunk in chunks(sorted(versions)):
                for run_id, vid in s.execute(
                    _edges(wanted).where(RunArtifact.version_id.in_(chunk))
                ):
                    r, v = f"run:{run_id}", f"version:{vid}"
                    edges.add((r, v) if upstream else (v, r))
                    if r not in depths:
                        depths[r] = sign * level
                        next_runs.add(run_id)
        if runs:
            # from runs: upstream to the versions they used, downstream to what they logged
            wanted = INPUT if upstream else OUTPUT
            for run_chunk in chunks(sorted(runs)):
                for run_id, vid in s.execute(
                    _edges(wanted).where(RunArtifact.run_id.in_(run_chunk))
                ):
                    r, v = f"run:{run_id}", f"version:{vid}"
                    edges.add((v, r) if upstream else (r, v))
                    if v not in depths:
                        depths[v] = sign * level
                        next_versions.add(vid)
        versions, runs = next_versions, next_runs


def _lineage_nodes(s: Session, depths: dict[str, int]) -> list[LineageNode]:
    run_ids = sorted(k[4:] for k in depths if k.startswith("run:"))
    version_ids = sorted(int(k[8:]) for k in depths if k.startswith("version:"))
    nodes: list[LineageNode] = []
    for chunk in chunks(run_ids):
        for rid, name, job_type, project in s.execute(
            sa.select(Run.id, Run.name, Run.job_type, Project.name)
            .join(Project, Project.id == Run.project_id)
            .where(Run.id.in_(chunk))
        ):
            key = f"run:{rid}"
            nodes.append(LineageNode(key, "run", name, project, job_type, depths[key]))
    for vchunk in chunks(version_ids):
        for vid, number, name, type_, project in s.execute(
            sa.select(Version.id, Version.version, Artifact.name, Artifact.type, Project.name)
            .join(Artifact, Artifact.id == Version.artifact_id)
            .join(Project, Project.id == Artifact.project_id)
            .where(Version.id.in_(vchunk))
        ):
            key = f"version:{vid}"
            label = f"{name}:v{number}"
            nodes.append(LineageNode(key, "version", label, project, type_, depths[key]))
    return nodes


class LineageMixin(SqlBase):
    def record_use(self, run_id: str, version_id: int) -> None:
        def work(s: Session) -> None:
            run = find_run(s, run_id)
            version = find_version(s, version_id)
            add_edge(s, run.id, version.id, INPUT, utcnow())

        self._write(work)

    def logged_by(self, version_id: int) -> RunInfo | None:
        def work(s: Session) -> RunInfo | None:
            version = find_version(s, version_id)
            if version.run_id is None:
                return None
            run = find_run(s, version.run_id)
            return run_info(run, project_name(s, run.project_id))

        return self._read(work)

    def used_by(self, version_id: int) -> list[RunInfo]:
        def work(s: Session) -> list[RunInfo]:
            version = find_version(s, version_id)
            rows = s.execute(
                sa.select(Run, Project.name)
                .join(RunArtifact, RunArtifact.run_id == Run.id)
                .join(Project, Project.id == Run.project_id)
                .where(RunArtifact.version_id == version.id, RunArtifact.direction == INPUT)
                .order_by(RunArtifact.id)
            )
            return [run_info(run, project) for run, project in rows]

        return self._read(work)

    def _run_versions(self, run_id: str, direction: str) -> list[VersionInfo]:
        def work(s: Session) -> list[VersionInfo]:
            run = find_run(s, run_id)
            versions = s.scalars(
                sa.select(Version)
                .join(RunArtifact, RunArtifact.version_id == Version.id)
                .where(RunArtifact.run_id == run.id, RunArtifact.direction == direction)
                .order_by(RunArtifact.id)
            ).all()
            return version_infos(s, versions)

        return self._read(work)

    def run_inputs(self, run_id: str) -> list[VersionInfo]:
        return self._run_versions(run_id, INPUT)

    def run_outputs(self, run_id: str) -> list[VersionInfo]:
        return self._run_versions(run_id, OUTPUT)

    def lineage(
        self, version_id: int, *, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        if direction not in ("up", "down", "both"):
            raise InvalidInputError(
                f"invalid lineage direction {direction!r}: use 'up', 'down' or 'both'"
            )
        if depth is not None:
            check_int("depth", depth)

        def work(s: Session) -> LineageGraph:
            root = find_version(s, version_id)
            root_id = f"version:{root.id}"
            depths: dict[str, int] = {root_id: 0}
            edges: set[tuple[str, str]] = set()
            if direction in ("up", "both"):
                _walk(s, root.id, upstream=True, depth=depth, depths=depths, edges=edges)
            if direction in ("down", "both"):
                _walk(s, root.id, upstream=False, depth=depth, depths=depths, edges=edges)
            nodes = _lineage_nodes(s, depths)
            nodes.sort(key=lambda n: (n.id != root_id, n.depth, n.id))
            return LineageGraph(
                root=root_id,
                nodes=nodes,
                edges=[LineageEdge(source=a, target=b) for a, b in sorted(edges)],
            )

        return self._read(work)
