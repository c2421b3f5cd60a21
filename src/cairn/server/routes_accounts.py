"""Accounts: who am I, users, API keys, project members."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from cairn.errors import NotFoundError, PermissionDeniedError
from cairn.server.deps import (
    DEFAULT_PAGE,
    Caller,
    Int64,
    Limit,
    Offset,
    Services,
    Svc,
    slice_page,
)
from cairn.service.accounts import Principal

router = APIRouter(tags=["accounts"])


class CreateUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    admin: bool = False


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = ""


class SetRole(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str


def _server_admin(caller: Principal, what: str) -> None:
    if caller.open:
        raise PermissionDeniedError(
            f"{what} needs an administrator's key; this server has no users yet: create the "
            "first administrator on the server with `cairn server create-admin NAME`"
        )
    if not caller.is_admin:
        raise PermissionDeniedError(f"only server administrators may {what}")


def _self_or_admin(svc: Services, caller: Principal, user: str) -> None:
    if caller.open:
        _server_admin(caller, "managing API keys")
    if not caller.is_admin and caller.name != user:
        # another user's keys: say nothing about whether that user exists
        raise PermissionDeniedError("you may only manage your own API keys")


@router.get("/me", summary="The caller: user, administrator or not, projects and roles")
def me(svc: Svc, caller: Caller) -> dict[str, Any]:
    return {
        "user": caller.name,
        "admin": caller.is_admin,
        "open": caller.open,
        "projects": svc.accounts.roles(caller),
    }


@router.get("/users", summary="Every user (administrators)")
def list_users(
    request: Request, svc: Svc, caller: Caller, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> dict[str, Any]:
    _server_admin(caller, "list users")
    return slice_page(request, [u.to_dict() for u in svc.accounts.list_users()], limit, offset)


@router.post("/users", status_code=201, summary="Create a user (administrators)")
def create_user(body: CreateUser, svc: Svc, caller: Caller) -> dict[str, Any]:
    _server_admin(caller, "create users")
    return svc.accounts.create_user(body.name, admin=body.admin).to_dict()


@router.get("/users/{user}/keys", summary="A user's API keys (never the secrets)")
def list_keys(
    request: Request,
    user: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    _self_or_admin(svc, caller, user)
    return slice_page(request, [k.to_dict() for k in svc.accounts.list_keys(user)], limit, offset)


@router.post("/users/{user}/keys", status_code=201, summary="Create an API key (shown once)")
def create_key(user: str, body: CreateKey, svc: Svc, caller: Caller) -> dict[str, Any]:
    _self_or_admin(svc, caller, user)
    info, token = svc.accounts.create_key(user, body.label)
    return {**info.to_dict(), "key": token}


@router.delete("/keys/{key_id}", summary="Revoke an API key")
def revoke_key(key_id: Int64, svc: Svc, caller: Caller) -> dict[str, Any]:
    if caller.open:
        _server_admin(caller, "revoking API keys")
    key = svc.accounts.get_key(key_id)
    if not caller.is_admin and key.user != caller.name:
        raise NotFoundError(f"no API key with id {key_id}")
    return svc.accounts.revoke_key(key_id).to_dict()


@router.get("/projects/{project}/members", summary="Members of a project and their roles")
def members(
    request: Request,
    project: str,
    svc: Svc,
    caller: Caller,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> dict[str, Any]:
    svc.accounts.require(caller, project, "read")
    items = [m.to_dict() for m in svc.accounts.members(project)]
    return slice_page(request, items, limit, offset)


@router.put("/projects/{project}/members/{user}", summary="Give a user a role in a project")
def set_role(project: str, user: str, body: SetRole, svc: Svc, caller: Caller) -> dict[str, Any]:
    svc.accounts.require(caller, project, "admin")
    return svc.accounts.set_role(project, user, body.role, create=caller.is_admin).to_dict()


@router.delete(
    "/projects/{project}/members/{user}", status_code=204, summary="Remove a project member"
)
def remove_member(project: str, user: str, svc: Svc, caller: Caller) -> None:
    svc.accounts.require(caller, project, "admin")
    svc.accounts.remove_member(project, user)


__all__ = ["router"]
