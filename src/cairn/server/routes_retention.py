"""Retention: TTLs of versions (writers of the project), policies (project admins for a
project or its artifacts, registry admins for a collection) and evaluating them (server
administrators: the report's bytes are counted over the whole store, across projects).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from cairn.errors import ArtifactNotFoundError, PermissionDeniedError, ProjectNotFoundError
from cairn.objects.usage import exclusive_bytes
from cairn.server.deps import Caller, Int64, Services, Svc
from cairn.server.routes_registries import require_registry
from cairn.server.routes_registry import Strict
from cairn.service.accounts import Principal
from cairn.service.retention import Target
from cairn.service.sql.retention import SqlRetention

router = APIRouter(tags=["retention"])


class SetTtl(Strict):
    ttl_seconds: int | None = Field(ge=0, le=100 * 365 * 86400)


class SetPolicy(Strict):
    ttl_seconds: int | None = None
    keep_last: int | None = None
    keep_best: int | None = None
    best_key: str | None = Field(default=None, max_length=1024)
    best_order: str | None = None
    keep_used_days: int | None = None


class Apply(Strict):
    project: str | None = Field(default=None, max_length=128)
    dry_run: bool = False


def _retention(svc: Services) -> SqlRetention:
    return SqlRetention(svc.registry.engine)


def _user(caller: Principal) -> str | None:
    return None if caller.open else caller.name


def _version(svc: Services, caller: Principal, version_id: int, need: str) -> None:
    """The caller has ``need`` on the version's project; a version they may not read is not
    found."""
    info = svc.registry.get_version(version_id)
    try:
        svc.accounts.require(caller, info.project, need)
    except ProjectNotFoundError:
        raise ArtifactNotFoundError(f"no artifact version with id {version_id}") from None


def _changes(body: SetPolicy) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


def measure(svc: Services) -> Any:
    """Counts bytes over the server's store (see `cairn.objects.usage`)."""
    store = svc.objects.store

    def count(dropped: list[str], kept: list[str], leaves: list[str]) -> tuple[int, int]:
        return exclusive_bytes(lambda d: store.get(d, verify=False), dropped, kept, leaves)

    return count


@router.get("/versions/{version_id}/ttl", summary="A version's time to live")
def get_ttl(version_id: Int64, svc: Svc, caller: Caller) -> Any:
    """Its own TTL (null: inherited, 0: never), the one in force, where that comes from, and
    when the version expires."""
    _version(svc, caller, version_id, "read")
    return _retention(svc).ttl(version_id).to_dict()


@router.put("/versions/{version_id}/ttl", summary="Set a version's time to live")
def set_ttl(version_id: Int64, body: SetTtl, svc: Svc, caller: Caller) -> Any:
    """Writers. ``ttl_seconds``: counted from the version's creation; 0 never expires; null
    takes the artifact's or project's default."""
    _version(svc, caller, version_id, "write")
    return _retention(svc).set_ttl(version_id, body.ttl_seconds, user=_user(caller)).to_dict()


@router.get("/projects/{project}/retention", summary="A project's retention policies")
def project_policies(project: str, svc: Svc, caller: Caller) -> Any:
    """The project's own policy and its artifacts' (readers may see them)."""
    svc.accounts.require(caller, project, "read")
    return {"items": [p.to_dict() for p in _retention(svc).policies(project=project)]}


@router.put("/projects/{project}/retention", summary="Set a project's retention policy")
def set_project_policy(project: str, body: SetPolicy, svc: Svc, caller: Caller) -> Any:
    """Project admins. The fields sent are set (null unsets one); its artifacts take the
    project's value for every field they do not set."""
    svc.accounts.require(caller, project, "admin")
    policy = _retention(svc).set_policy(Target(project=project), _changes(body), user=_user(caller))
    return policy.to_dict()


@router.put(
    "/projects/{project}/artifacts/{name}/retention", summary="Set an artifact's retention policy"
)
def set_artifact_policy(project: str, name: str, body: SetPolicy, svc: Svc, caller: Caller) -> Any:
    """Project admins. Keep the last N, the best N by a metadata key, versions used within D
    days; a default TTL for its versions."""
    svc.accounts.require(caller, project, "admin")
    target = Target(project=project, artifact=name)
    return _retention(svc).set_policy(target, _changes(body), user=_user(caller)).to_dict()


@router.get("/registries/{registry}/retention", summary="A registry's retention policies")
def registry_policies(registry: str, svc: Svc, caller: Caller) -> Any:
    require_registry(svc, caller, registry, "viewer")
    return {"items": [p.to_dict() for p in _retention(svc).policies(registry=registry)]}


@router.put(
    "/registries/{registry}/collections/{collection}/retention",
    summary="Set a collection's link TTL",
)
def set_collection_policy(
    registry: str, collection: str, body: SetPolicy, svc: Svc, caller: Caller
) -> Any:
    """Registry admins. Links older than the TTL that hold no alias are unlinked."""
    require_registry(svc, caller, registry, "admin")
    target = Target(registry=registry, collection=collection)
    return _retention(svc).set_policy(target, _changes(body), user=_user(caller)).to_dict()


@router.post("/retention/apply", summary="Evaluate retention now")
def apply(body: Apply, svc: Svc, caller: Caller) -> Any:
    """Server administrators. Deletes what TTLs and policies say (of one project, or all), or
    with ``dry_run`` only reports it, with the bytes gc would then free. 409 while another
    evaluation runs."""
    if not caller.is_admin:
        raise PermissionDeniedError("only server administrators may apply retention")
    report = _retention(svc).apply(
        project=body.project, dry_run=body.dry_run, user=_user(caller), measure=measure(svc)
    )
    return report.to_dict()
