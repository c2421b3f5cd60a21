"""Projects, runs, artifacts, versions and lineage: each route checks the caller's role and
calls the same `SqlRegistry` method the embedded mode calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cairn.core.digest import is_digest
from cairn.core.records import LineageGraph, RunInfo, VersionInfo
from cairn.errors import (
    ArtifactNotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
    RunNotFoundError,
)
from cairn.server.deps import (
    DEFAULT_PAGE,
    Caller,
    Int64,
    Limit,
    Offset,
    Services,
    Svc,
    page,
    page_window,
)
from cairn.server.deps import slice_page as _slice
from cairn.service.accounts import Principal
from cairn.service.validate import encode_metric

router = APIRouter()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRun(Strict):
    name: str | None = None
    job_type: str | None = None
    config: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)
    notes: str = ""
    host: str = ""
    python_version: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    git_diff_digest: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class UpdateRun(Strict):
    state: str | None = None
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    tags: list[str] | None = None
    notes: str | None = None
    failure: str | None = None
    git_diff_digest: str | None = None


class LogMetrics(Strict):
    rows: list[tuple[Int64, dict[str, Any]]]


class RecordUse(Strict):
    version_id: Int64


class CommitVersion(Strict):
    type: str
    digest: str
    size: Int64
    file_count: Int64
    description: str = ""
    metadata: dict[str, Any] | None = None
    aliases: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    run_id: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class UpdateVersion(Strict):
    description: str | None = None
    metadata: dict[str, Any] | None = None
    aliases: list[str] | None = None
    tags: list[str] | None = None
    run_id: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class UpdateArtifact(Strict):
    name: str | None = Field(None, description="a new name for the artifact")
    type: str | None = None
    description: str | None = None
    tags: list[str] | None = Field(None, description="the artifact's own tags (the full list)")
    run_id: str | None = Field(None, description="the run making the change (in the history)")
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class AddLabel(Strict):
    run_id: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class AddAlias(AddLabel):
    alias: str


class AddTag(AddLabel):
    tag: str


class CreateProject(Strict):
    name: str


# --- helpers ----------------------------------------------------------------------------------


def _who(caller: Principal, asked: str | None) -> str | None:
    """The user recorded in history: the key's user; on an open server, what the client said."""
    return asked if caller.open else caller.name


def _run(svc: Services, caller: Principal, run_id: str, need: str) -> RunInfo:
    info = svc.registry.get_run(run_id)
    try:
        svc.accounts.require(caller, info.project, need)
    except ProjectNotFoundError:
        raise RunNotFoundError(
            f"no run with id {run_id!r}: check the id (list runs with list_runs(project))"
        ) from None
    return info


def _version(svc: Services, caller: Principal, version_id: int, need: str) -> VersionInfo:
    info = svc.registry.get_version(version_id)
    try:
        svc.accounts.require(caller, info.project, need)
    except ProjectNotFoundError:
        raise ArtifactNotFoundError(
            f"no artifact version with id {version_id}: check the id, or resolve the version "
            "by name (resolve(project, name, 'latest'))"
        ) from None
    return info


def _readable(svc: Services, caller: Principal, projects: list[str]) -> set[str]:
    return svc.accounts.can_read(caller, projects)


def _versions(svc: Services, caller: Principal, infos: list[VersionInfo]) -> list[VersionInfo]:
    ok = _readable(svc, caller, [v.project for v in infos])
    return [v for v in infos if v.project in ok]


def _runs(svc: Services, caller: Principal, infos: list[RunInfo]) -> list[RunInfo]:
    ok = _readable(svc, caller, [r.project for r in infos])
    return [r for r in infos if r.project in ok]


# --- projects ---------------------------------------------------------------------------------


@router.get("/projects", tags=["projects"], summary="Projects the caller may see")
def list_projects(
    request: Request, svc: Svc, caller: Caller, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> dict[str, Any]:
    roles = svc.accounts.roles(caller)
    items = []
    for p in svc.registry.list_projects():
        if roles is None or p.name in roles:
            item = p.to_dict()
            item["role"] = "admin" if roles is None else roles[p.name]
            items.append(item)
    return _slice(request, items, limit, offset)


@router.post("/projects", tags=["projects"], status_code=201, summary="Create an empty project")
def create_project(body: CreateProject, svc: Svc, caller: Caller) -> dict[str, Any]:
    svc.accounts.create_project(caller, body.name)
    return {"name": body.name}


# --- runs -------------------------------------------------------------------------------------


@router.post("/projects/{project}/runs", tags=["runs"], status_code=201, summary="Start a run")
def create_run(project: str, body: CreateRun, svc: Svc, caller: Caller) -> dict[str, Any]:
    svc.accounts.require_writable(caller, project)
    diff = body.git_diff_digest
    if diff and is_digest(diff):
        # binds it, or refuses a diff the caller has not uploaded and may not read: a run must
        # not carry a digest that would later give its project another project's object
        svc.objects.bind_objects(caller, project, [diff])
    fields = body.model_dump(exclude={"user"})
    info = svc.registry.create_run(project, **fields, user=_who(caller, body.user))
    return info.to_dict()


@router.get("/projects/{project}/runs", tags=["runs"], summary="Runs of a project, newest first")
def list_runs(
    request: Request,
    project: str,
    svc: Svc,
    caller: Caller,
    job_type: str | None = None,
    state: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    svc.accounts.require(caller, project, "read")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_runs(
        project,
        job_type=job_type,
        state=state,  # type: ignore[arg-type]  # validated by the registry
        limit=limit + 1,
        offset=offset,
    )
    items = [r.to_dict() for r in infos[:limit]]
    return page(request, items, limit, offset, more=len(infos) > limit)


@router.get("/runs/{run_id}", tags=["runs"], summary="One run")
def get_run(run_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return _run(svc, caller, run_id, "read").to_dict()


@router.patch("/runs/{run_id}", tags=["runs"], summary="Change a run's state, summary, ...")
def update_run(run_id: str, body: UpdateRun, svc: Svc, caller: Caller) -> dict[str, Any]:
    run = _run(svc, caller, run_id, "write")
    if body.git_diff_digest and is_digest(body.git_diff_digest):
        # as when a run is created with it: bound to the run's project, or refused when the
        # caller neither uploaded it nor may read it
        svc.objects.bind_objects(caller, run.project, [body.git_diff_digest])
    info = svc.registry.update_run(
        run_id,
        state=body.state,  # type: ignore[arg-type]  # validated by the registry
        summary=body.summary,
        config=body.config,
        tags=body.tags,
        notes=body.notes,
        failure=body.failure,
        git_diff_digest=body.git_diff_digest,
    )
    return info.to_dict()


@router.post("/runs/{run_id}/metrics", tags=["runs"], status_code=204, summary="Log metric rows")
def log_metrics(run_id: str, body: LogMetrics, svc: Svc, caller: Caller) -> Response:
    _run(svc, caller, run_id, "write")
    svc.registry.log_metrics(run_id, body.rows)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics", tags=["runs"], summary="Metric rows in step order")
def run_metrics(
    request: Request,
    run_id: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Values JSON cannot hold (NaN, infinities) come as the strings "NaN", "Infinity" and
    "-Infinity"."""
    _run(svc, caller, run_id, "read")
    limit, offset = page_window(limit, offset)
    rows = svc.registry.run_metrics(run_id, limit=limit + 1, offset=offset)
    items = [
        {"step": m.step, "data": encode_metric(m.data), "at": m.at.isoformat()}
        for m in rows[:limit]
    ]
    return page(request, items, limit, offset, more=len(rows) > limit)


@router.post(
    "/runs/{run_id}/inputs",
    tags=["lineage"],
    status_code=204,
    summary="Record that a run used a version",
)
def record_use(run_id: str, body: RecordUse, svc: Svc, caller: Caller) -> Response:
    _run(svc, caller, run_id, "write")
    _version(svc, caller, body.version_id, "read")
    svc.registry.record_use(run_id, body.version_id)
    return Response(status_code=204)


@router.get("/runs/{run_id}/inputs", tags=["lineage"], summary="Versions a run used")
def run_inputs(
    request: Request,
    run_id: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    _run(svc, caller, run_id, "read")
    infos = _versions(svc, caller, svc.registry.run_inputs(run_id))
    return _slice(request, [v.to_dict() for v in infos], limit, offset)


@router.get("/runs/{run_id}/outputs", tags=["lineage"], summary="Versions a run logged")
def run_outputs(
    request: Request,
    run_id: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    _run(svc, caller, run_id, "read")
    infos = _versions(svc, caller, svc.registry.run_outputs(run_id))
    return _slice(request, [v.to_dict() for v in infos], limit, offset)


# --- artifacts and versions -------------------------------------------------------------------


@router.get("/projects/{project}/artifacts", tags=["artifacts"], summary="Artifacts of a project")
def list_artifacts(
    request: Request,
    project: str,
    svc: Svc,
    caller: Caller,
    type: str | None = None,
    search: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    svc.accounts.require(caller, project, "read")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_artifacts(
        project, type=type, search=search, limit=limit + 1, offset=offset
    )
    items = [a.to_dict() for a in infos[:limit]]
    return page(request, items, limit, offset, more=len(infos) > limit)


@router.post(
    "/projects/{project}/artifacts/{name}/versions",
    tags=["artifacts"],
    summary="Log a version whose objects are uploaded",
    responses={
        200: {"description": "a live version already had this digest: it is returned"},
        201: {"description": "a new version was made"},
    },
)
def commit_version(
    project: str, name: str, body: CommitVersion, response: Response, svc: Svc, caller: Caller
) -> dict[str, Any]:
    """Every object of the version must have been uploaded (or be readable by the caller);
    they become readable by everyone who may read the project. Version numbers are taken
    atomically (gap-free and unique under concurrent logging)."""
    svc.accounts.require_writable(caller, project)
    if body.run_id is not None:
        _run(svc, caller, body.run_id, "write")
    if is_digest(body.digest):
        svc.objects.bind_version(caller, project, body.digest)
    fields = body.model_dump(exclude={"user"})
    info, created = svc.registry.commit_version(
        project, name, **fields, user=_who(caller, body.user)
    )
    response.status_code = 201 if created else 200
    return {"version": info.to_dict(), "created": created}


@router.get(
    "/projects/{project}/artifacts/{name}/versions",
    tags=["artifacts"],
    summary="Live versions of an artifact, newest first",
)
def list_versions(
    request: Request,
    project: str,
    name: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    order: str = "-version",
    tag: Annotated[list[str] | None, Query(description="only versions with every tag")] = None,
) -> dict[str, Any]:
    svc.accounts.require(caller, project, "read")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_versions(
        project, name, limit=limit + 1, offset=offset, order=order, tags=tag or []
    )
    items = [v.to_dict() for v in infos[:limit]]
    return page(request, items, limit, offset, more=len(infos) > limit)


@router.get("/projects/{project}/artifacts/{name}", tags=["artifacts"], summary="One artifact")
def get_artifact(project: str, name: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    svc.accounts.require(caller, project, "read")
    return svc.registry.get_artifact(project, name).to_dict()


@router.patch(
    "/projects/{project}/artifacts/{name}",
    tags=["artifacts"],
    summary="Rename an artifact, change its type, description or tags",
)
def update_artifact(
    project: str, name: str, body: UpdateArtifact, svc: Svc, caller: Caller
) -> dict[str, Any]:
    svc.accounts.require_writable(caller, project)
    if body.run_id is not None:
        _run(svc, caller, body.run_id, "write")
    info = svc.registry.update_artifact(
        project,
        name,
        new_name=body.name,
        type=body.type,
        description=body.description,
        tags=body.tags,
        run_id=body.run_id,
        user=_who(caller, body.user),
    )
    return info.to_dict()


@router.delete(
    "/projects/{project}/artifacts/{name}",
    tags=["artifacts"],
    summary="Delete every version of an artifact",
)
def delete_artifact(
    project: str,
    name: str,
    svc: Svc,
    caller: Caller,
    run_id: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    svc.accounts.require_writable(caller, project)
    if run_id is not None:
        _run(svc, caller, run_id, "write")
    deleted = svc.registry.delete_artifact(project, name, run_id=run_id, user=_who(caller, user))
    return {"deleted": deleted}


@router.get(
    "/projects/{project}/artifacts/{name}/versions/{ref}",
    tags=["artifacts"],
    summary="Resolve 'latest', 'vN', an alias or a digest",
)
def resolve(
    project: str, name: str, ref: str, svc: Svc, caller: Caller, at: str | None = None
) -> dict[str, Any]:
    """With ``at`` (an ISO date and time with a zone), the version ``ref`` named then."""
    svc.accounts.require(caller, project, "read")
    if at is not None:
        from cairn.server.routes_registries import parse_at

        return svc.registry.resolve_at(project, name, ref, parse_at(at)).to_dict()
    return svc.registry.resolve(project, name, ref).to_dict()


@router.get("/versions", tags=["artifacts"], summary="Live versions with a digest")
def versions_with_digest(
    request: Request,
    digest: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    infos = _versions(svc, caller, svc.registry.versions_with_digest(digest))
    return _slice(request, [v.to_dict() for v in infos], limit, offset)


@router.get("/versions/{version_id}", tags=["artifacts"], summary="One version")
def get_version(version_id: Int64, svc: Svc, caller: Caller) -> dict[str, Any]:
    return _version(svc, caller, version_id, "read").to_dict()


@router.patch(
    "/versions/{version_id}",
    tags=["artifacts"],
    summary="Set description, metadata, aliases or tags",
)
def update_version(
    version_id: Int64, body: UpdateVersion, svc: Svc, caller: Caller
) -> dict[str, Any]:
    _version(svc, caller, version_id, "write")
    if body.run_id is not None:
        _run(svc, caller, body.run_id, "write")
    info = svc.registry.update_version(
        version_id,
        description=body.description,
        metadata=body.metadata,
        aliases=body.aliases,
        tags=body.tags,
        run_id=body.run_id,
        user=_who(caller, body.user),
    )
    return info.to_dict()


def _label_edit(svc: Any, caller: Any, version_id: int, run_id: str | None) -> None:
    _version(svc, caller, version_id, "write")
    if run_id is not None:
        _run(svc, caller, run_id, "write")


@router.post(
    "/versions/{version_id}/aliases",
    tags=["artifacts"],
    summary="Point an alias at a version (atomic; says where it moved from)",
)
def add_alias(version_id: Int64, body: AddAlias, svc: Svc, caller: Caller) -> dict[str, Any]:
    _label_edit(svc, caller, version_id, body.run_id)
    info, moved_from = svc.registry.add_alias(
        version_id, body.alias, run_id=body.run_id, user=_who(caller, body.user)
    )
    return {"version": info.to_dict(), "moved_from": moved_from}


@router.delete(
    "/versions/{version_id}/aliases/{alias}",
    tags=["artifacts"],
    summary="Remove an alias from a version (atomic)",
)
def remove_alias(
    version_id: Int64,
    alias: str,
    svc: Svc,
    caller: Caller,
    run_id: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    _label_edit(svc, caller, version_id, run_id)
    info = svc.registry.remove_alias(version_id, alias, run_id=run_id, user=_who(caller, user))
    return info.to_dict()


@router.post("/versions/{version_id}/tags", tags=["artifacts"], summary="Tag a version (atomic)")
def add_tag(version_id: Int64, body: AddTag, svc: Svc, caller: Caller) -> dict[str, Any]:
    _label_edit(svc, caller, version_id, body.run_id)
    info = svc.registry.add_tag(
        version_id, body.tag, run_id=body.run_id, user=_who(caller, body.user)
    )
    return info.to_dict()


@router.delete(
    "/versions/{version_id}/tags/{tag}",
    tags=["artifacts"],
    summary="Remove a tag from a version (atomic)",
)
def remove_tag(
    version_id: Int64,
    tag: str,
    svc: Svc,
    caller: Caller,
    run_id: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    _label_edit(svc, caller, version_id, run_id)
    info = svc.registry.remove_tag(version_id, tag, run_id=run_id, user=_who(caller, user))
    return info.to_dict()


@router.delete(
    "/versions/{version_id}", tags=["artifacts"], status_code=204, summary="Delete a version"
)
def delete_version(
    version_id: Int64,
    svc: Svc,
    caller: Caller,
    force: bool = False,
    run_id: str | None = None,
    user: str | None = None,
) -> Response:
    _version(svc, caller, version_id, "write")
    if run_id is not None:
        _run(svc, caller, run_id, "write")
    svc.registry.delete_version(version_id, force=force, run_id=run_id, user=_who(caller, user))
    return Response(status_code=204)


@router.get("/versions/{version_id}/history", tags=["artifacts"], summary="Changes, oldest first")
def history(
    request: Request,
    version_id: Int64,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    _version(svc, caller, version_id, "read")
    items = [h.to_dict() for h in svc.registry.history(version_id)]
    return _slice(request, items, limit, offset)


@router.get(
    "/versions/{version_id}/logged-by", tags=["lineage"], summary="The run that logged a version"
)
def logged_by(version_id: Int64, svc: Svc, caller: Caller) -> dict[str, Any]:
    _version(svc, caller, version_id, "read")
    run = svc.registry.logged_by(version_id)
    if run is not None and not _runs(svc, caller, [run]):
        run = None
    return {"run": run.to_dict() if run else None}


@router.get("/versions/{version_id}/used-by", tags=["lineage"], summary="Runs that used a version")
def used_by(
    request: Request,
    version_id: Int64,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    _version(svc, caller, version_id, "read")
    runs = _runs(svc, caller, svc.registry.used_by(version_id))
    return _slice(request, [r.to_dict() for r in runs], limit, offset)


@router.get("/versions/{version_id}/lineage", tags=["lineage"], summary="Lineage graph")
def lineage(
    version_id: Int64,
    svc: Svc,
    caller: Caller,
    direction: str = "both",
    depth: Int64 | None = None,
) -> dict[str, Any]:
    """Nodes in projects the caller may not read are left out, with their edges."""
    _version(svc, caller, version_id, "read")
    graph: LineageGraph = svc.registry.lineage(
        version_id,
        direction=direction,  # type: ignore[arg-type]  # validated by the registry
        depth=depth,
    )
    ok = _readable(svc, caller, [n.project for n in graph.nodes])
    graph.nodes = [n for n in graph.nodes if n.project in ok]
    kept = {n.id for n in graph.nodes}
    graph.edges = [e for e in graph.edges if e.source in kept and e.target in kept]
    return graph.to_dict()


@router.get("/root-digests", tags=["artifacts"], summary="Digests of every live version (gc)")
def all_root_digests(
    request: Request, svc: Svc, caller: Caller, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> dict[str, Any]:
    if not caller.is_admin:
        raise PermissionDeniedError("only server administrators may list every version's digest")
    return _slice(request, list(svc.registry.all_root_digests()), limit, offset)


__all__ = ["router"]
