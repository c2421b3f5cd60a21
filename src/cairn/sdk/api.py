"""`Api`: read (and edit) what is stored, outside of any run."""

from __future__ import annotations

from cairn import config
from cairn.core import names
from cairn.core.records import LineageGraph, ProjectInfo, RunInfo, RunState
from cairn.sdk.artifact import Artifact
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.run import Run
from cairn.service.registry import Direction


class Api:
    """Query the registry: ``Api().artifact("project/name:v1")``."""

    def __init__(self, project: str | None = None) -> None:
        self._backend: Backend = get_backend()
        self.default_project = project or config.default_project() or "default"

    def _project(self, project: str | None) -> str:
        return names.check_project(project or self.default_project)

    def projects(self) -> list[ProjectInfo]:
        return self._backend.registry.list_projects()

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        ref = names.parse_ref(name)
        info = self._backend.registry.resolve(self._project(ref.project), ref.name, ref.ref)
        if type is not None and info.type != type:
            from cairn.errors import InvalidInputError

            raise InvalidInputError(f"{info.qualified_name} has type {info.type!r}, not {type!r}")
        return Artifact._from_info(info, self._backend)

    def artifacts(
        self,
        project: str | None = None,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Artifact]:
        """The latest version of each artifact in the project."""
        project = self._project(project)
        out = []
        for info in self._backend.registry.list_artifacts(
            project, type=type, search=search, limit=limit, offset=offset
        ):
            if info.version_count:
                out.append(self.artifact(f"{project}/{info.name}:latest"))
        return out

    def artifact_versions(
        self, name: str, project: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Artifact]:
        """Live versions of an artifact, newest first."""
        ref = names.parse_ref(name)
        project = self._project(project or ref.project)
        return [
            Artifact._from_info(v, self._backend)
            for v in self._backend.registry.list_versions(
                project, ref.name, limit=limit, offset=offset
            )
        ]

    def runs(
        self,
        project: str | None = None,
        job_type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        state: RunState | None = None,
    ) -> list[Run]:
        """Runs of a project, newest first; ``state="crashed"`` includes runs whose process
        stopped sending heartbeats without finishing them."""
        infos = self._backend.registry.list_runs(
            self._project(project), job_type=job_type, state=state, limit=limit, offset=offset
        )
        return [Run._view(i, self._backend) for i in infos]

    def run(self, run_id: str) -> Run:
        info: RunInfo = self._backend.registry.get_run(run_id)
        return Run._view(info, self._backend)

    def lineage(
        self, name: str, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        return self.artifact(name).lineage(direction=direction, depth=depth)
