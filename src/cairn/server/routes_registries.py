"""Registries, collections and links, search, and the audit log.

Roles per registry: a viewer reads it; a member links and unlinks versions and sets aliases; a
maintainer also sets, moves and removes the registry's protected aliases; an admin also edits
the registry and its members. Server administrators are admins of every registry. A registry
the caller has no role in does not exist for them (404, as for projects). Linking needs read
access to the version's project as well.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from cairn.core.records import VersionInfo
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidInputError,
    PermissionDeniedError,
    ProjectNotFoundError,
    RegistryNotFoundError,
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
from cairn.server.routes_registry import Strict
from cairn.service.accounts import Principal
from cairn.service.sql.registries import check_role, role_at_least

router = APIRouter()


class CreateRegistry(Strict):
    name: str
    description: str = ""
    protected_aliases: list[str] = Field(default_factory=list)


class UpdateRegistry(Strict):
    description: str | None = None
    protected_aliases: list[str] | None = None


class SetMember(Strict):
    role: str | None


class Link(Strict):
    version_id: Int64
    aliases: list[str] = Field(default_factory=list)
    run_id: str | None = None


class LinkAliases(Strict):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    run_id: str | None = None


class UpdateCollection(Strict):
    description: str | None = None
    tags: list[str] | None = None


# --- roles ------------------------------------------------------------------------------------


def registry_role(svc: Services, caller: Principal, registry: str) -> str | None:
    if caller.is_admin:
        svc.registry.get_registry(registry)  # exists?
        return "admin"
    if caller.name is None:
        return None
    try:
        return svc.registry.registry_role(registry, caller.name)
    except RegistryNotFoundError:
        return None


def require_registry(svc: Services, caller: Principal, registry: str, need: str) -> str:
    """The caller's role, at least ``need``; a registry they have no role in is not found."""
    role = registry_role(svc, caller, registry)
    if role is None:
        raise RegistryNotFoundError(
            f"registry {registry!r} does not exist or you have no access to it"
        )
    if not role_at_least(role, need):
        raise PermissionDeniedError(
            f"user {caller.name!r} is a {role} of registry {registry!r}; this needs {need} "
            "(ask one of the registry's admins)"
        )
    return role


def _user(caller: Principal) -> str | None:
    return None if caller.open else caller.name


def _at(at: str | None) -> datetime | None:
    return None if at is None else parse_at(at)


def parse_at(at: str) -> datetime:
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidInputError(
            f"'at' is a date and time such as 2026-11-30T12:00Z, not {at!r}"
        ) from None
    if when.tzinfo is None:
        raise InvalidInputError(f"'at' needs a time zone (such as Z or +01:00): {at!r}")
    return when


def _filters(filters: str | None) -> dict[str, Any] | None:
    if not filters:
        return None
    try:
        value = json.loads(filters)
    except ValueError:
        raise InvalidInputError(f"filters is a JSON object, not {filters[:100]!r}") from None
    if not isinstance(value, dict):
        raise InvalidInputError('filters is a JSON object such as {"metadata.acc": {"$gt": 0.9}}')
    return value


def _order(order: str | None) -> list[str] | None:
    return [o for o in order.split(",") if o] if order else None


# --- registries -------------------------------------------------------------------------------


@router.post("/registries", tags=["registries"], status_code=201, summary="Create a registry")
def create_registry(body: CreateRegistry, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Server administrators create registries; the creator becomes the registry's admin."""
    if not caller.is_admin:
        raise PermissionDeniedError(
            "only server administrators create registries (ask one of them)"
        )
    info = svc.registry.create_registry(
        body.name,
        description=body.description,
        protected_aliases=body.protected_aliases,
        user=_user(caller),
    )
    return info.to_dict()


@router.get("/registries", tags=["registries"], summary="Registries the caller may see")
def list_registries(
    request: Request, svc: Svc, caller: Caller, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> dict[str, Any]:
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_registries()
    if not caller.is_admin:
        infos = [r for r in infos if registry_role(svc, caller, r.name) is not None]
    chosen = infos[offset : offset + limit]
    return page(
        request, [r.to_dict() for r in chosen], limit, offset, more=len(infos) > offset + limit
    )


@router.get("/registries-exist", tags=["registries"], summary="Whether a registry is visible")
def registry_exists(name: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    try:
        return {"exists": registry_role(svc, caller, name) is not None}
    except RegistryNotFoundError:
        return {"exists": False}


@router.get("/registries/{registry}", tags=["registries"], summary="One registry")
def get_registry(registry: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    return svc.registry.get_registry(registry).to_dict()


@router.patch("/registries/{registry}", tags=["registries"], summary="Edit a registry")
def update_registry(
    registry: str, body: UpdateRegistry, svc: Svc, caller: Caller
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "admin")
    info = svc.registry.update_registry(
        registry,
        description=body.description,
        protected_aliases=body.protected_aliases,
        user=_user(caller),
    )
    return info.to_dict()


@router.get("/registries/{registry}/members", tags=["registries"], summary="Members and roles")
def registry_members(registry: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    return {"members": svc.registry.registry_members(registry)}


@router.put(
    "/registries/{registry}/members/{member}", tags=["registries"], summary="Set a member's role"
)
def set_registry_member(
    registry: str, member: str, body: SetMember, svc: Svc, caller: Caller
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "admin")
    if body.role is not None:
        check_role(body.role)
    svc.registry.set_registry_member(registry, member, body.role, user=_user(caller))
    return {"members": svc.registry.registry_members(registry)}


# --- collections and links --------------------------------------------------------------------


@router.get(
    "/registries/{registry}/collections", tags=["registries"], summary="Collections of a registry"
)
def list_collections(
    request: Request,
    registry: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_collections(registry, limit=limit + 1, offset=offset)
    items = [c.to_dict() for c in infos[:limit]]
    return page(request, items, limit, offset, more=len(infos) > limit)


@router.get(
    "/registries/{registry}/collections/{collection}", tags=["registries"], summary="A collection"
)
def get_collection(registry: str, collection: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    return svc.registry.get_collection(registry, collection).to_dict()


@router.patch(
    "/registries/{registry}/collections/{collection}",
    tags=["registries"],
    summary="Edit a collection's description and tags",
)
def update_collection(
    registry: str, collection: str, body: UpdateCollection, svc: Svc, caller: Caller
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "member")
    info = svc.registry.update_collection(
        registry, collection, description=body.description, tags=body.tags, user=_user(caller)
    )
    return info.to_dict()


@router.get(
    "/registries/{registry}/collections/{collection}/versions",
    tags=["registries"],
    summary="Linked versions, newest first",
)
def list_links(
    request: Request,
    registry: str,
    collection: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.list_links(registry, collection, limit=limit + 1, offset=offset)
    items = [x.to_dict() for x in infos[:limit]]
    return page(request, items, limit, offset, more=len(infos) > limit)


@router.get(
    "/registries/{registry}/collections/{collection}/versions/{ref}",
    tags=["registries"],
    summary="Resolve a collection version (optionally as of a time)",
)
def resolve_link(
    registry: str, collection: str, ref: str, svc: Svc, caller: Caller, at: str | None = None
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    return svc.registry.resolve_link(registry, collection, ref, at=_at(at)).to_dict()


@router.post(
    "/registries/{registry}/collections/{collection}/links",
    tags=["registries"],
    summary="Link a version into a collection",
)
def link_version(
    registry: str, collection: str, body: Link, svc: Svc, caller: Caller
) -> dict[str, Any]:
    role = require_registry(svc, caller, registry, "member")
    version = svc.registry.get_version(body.version_id)
    try:
        svc.accounts.require(caller, version.project, "read")
    except (ProjectNotFoundError, PermissionDeniedError):
        raise ArtifactNotFoundError(
            f"no artifact version with id {body.version_id}: check the id"
        ) from None
    if body.run_id is not None:
        run = svc.registry.get_run(body.run_id)
        svc.accounts.require(caller, run.project, "write")
    # the registry's members may download what is linked into it (before the link exists:
    # a link whose objects are not yet readable to them is never visible)
    svc.objects.bind_link(caller, registry, version.digest)
    info = svc.registry.link_version(
        registry,
        collection,
        body.version_id,
        aliases=body.aliases,
        run_id=body.run_id,
        user=_user(caller),
        allow_protected=role_at_least(role, "maintainer"),
    )
    return info.to_dict()


@router.delete(
    "/registries/{registry}/collections/{collection}/versions/{ref}",
    tags=["registries"],
    summary="Unlink a collection version",
)
def unlink_version(
    registry: str, collection: str, ref: str, svc: Svc, caller: Caller
) -> dict[str, Any]:
    role = require_registry(svc, caller, registry, "member")
    info = svc.registry.unlink_version(
        registry,
        collection,
        ref,
        user=_user(caller),
        allow_protected=role_at_least(role, "maintainer"),
    )
    return info.to_dict()


@router.post(
    "/registries/{registry}/collections/{collection}/versions/{ref}/aliases",
    tags=["registries"],
    summary="Add and remove a collection version's aliases",
)
def set_link_aliases(
    registry: str, collection: str, ref: str, body: LinkAliases, svc: Svc, caller: Caller
) -> dict[str, Any]:
    role = require_registry(svc, caller, registry, "member")
    info = svc.registry.set_link_aliases(
        registry,
        collection,
        ref,
        add=body.add,
        remove=body.remove,
        user=_user(caller),
        allow_protected=role_at_least(role, "maintainer"),
    )
    return info.to_dict()


@router.get(
    "/registries/{registry}/collections/{collection}/history",
    tags=["registries"],
    summary="A collection's changes, oldest first",
)
def collection_history(
    request: Request,
    registry: str,
    collection: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    limit, offset = page_window(limit, offset)
    entries = svc.registry.collection_history(registry, collection)
    chosen = [h.to_dict() for h in entries[offset : offset + limit]]
    return page(request, chosen, limit, offset, more=len(entries) > offset + limit)


@router.get(
    "/versions/{version_id}/links", tags=["registries"], summary="Where a version is linked"
)
def links_of(
    request: Request,
    version_id: Int64,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    version = svc.registry.get_version(version_id)
    try:
        svc.accounts.require(caller, version.project, "read")
    except (ProjectNotFoundError, PermissionDeniedError):
        raise ArtifactNotFoundError(f"no artifact version with id {version_id}") from None
    limit, offset = page_window(limit, offset)
    visible = [
        x for x in svc.registry.links_of(version_id) if registry_role(svc, caller, x.registry)
    ]
    chosen = [x.to_dict() for x in visible[offset : offset + limit]]
    return page(request, chosen, limit, offset, more=len(visible) > offset + limit)


# --- search -----------------------------------------------------------------------------------


@router.get("/registries/{registry}/search", tags=["search"], summary="Search linked versions")
def search_links(
    request: Request,
    registry: str,
    svc: Svc,
    caller: Caller,
    filters: str | None = None,
    order: str | None = None,
    collection: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    require_registry(svc, caller, registry, "viewer")
    limit, offset = page_window(limit, offset)
    infos = svc.registry.search_links(
        registry,
        collection=collection,
        filters=_filters(filters),
        order=_order(order),
        limit=limit + 1,
        offset=offset,
    )
    return page(
        request, [x.to_dict() for x in infos[:limit]], limit, offset, more=len(infos) > limit
    )


@router.get("/search", tags=["search"], summary="Search versions by metadata, tags, ...")
def search_versions(
    request: Request,
    svc: Svc,
    caller: Caller,
    filters: str | None = None,
    order: str | None = None,
    project: str | None = None,
    name: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The filter language is documented in docs/concepts.md (Search)."""
    wanted = _filters(filters)
    if project is not None:
        svc.accounts.require(caller, project, "read")
    elif not caller.is_admin:
        readable = sorted((svc.accounts.roles(caller) or {}).keys())
        if not readable:
            return page(request, [], *page_window(limit, offset), more=False)
        scope: dict[str, Any] = {"project": {"$in": readable}}
        wanted = {"$and": [wanted, scope]} if wanted else scope
    limit, offset = page_window(limit, offset)
    infos: list[VersionInfo] = svc.registry.search_versions(
        project=project,
        name=name,
        filters=wanted,
        order=_order(order),
        limit=limit + 1,
        offset=offset,
    )
    return page(
        request, [v.to_dict() for v in infos[:limit]], limit, offset, more=len(infos) > limit
    )


# --- audit ------------------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], summary="The audit log (server administrators)")
def audit_log(
    request: Request,
    svc: Svc,
    caller: Caller,
    user: str | None = None,
    project: str | None = None,
    registry: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    if not caller.is_admin:
        raise PermissionDeniedError("only server administrators may read the audit log")
    limit, offset = page_window(limit, offset)
    entries = svc.registry.audit_log(
        user=user,
        project=project,
        registry=registry,
        action=action,
        since=_at(since),
        until=_at(until),
        limit=limit + 1,
        offset=offset,
    )
    items = [e.to_dict() for e in entries[:limit]]
    return page(request, items, limit, offset, more=len(entries) > limit)
