"""Distributed versions: workers upsert parts, one finishes the version (writers of the
project; readers may list the pending parts). The same `SqlParts` the embedded mode uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from cairn.core.digest import is_digest
from cairn.errors import ProjectNotFoundError, RunNotFoundError
from cairn.server.deps import Caller, Int64, Services, Svc
from cairn.server.routes_registry import Strict
from cairn.service.accounts import Principal
from cairn.service.parts import PartRef
from cairn.service.sql.parts import SqlParts

router = APIRouter(tags=["artifacts"])
BASE = "/projects/{project}/artifacts/{name}/parts/{distributed_id}"


class UpsertPart(Strict):
    type: str
    root: str = Field(max_length=80)
    size: Int64
    file_count: Int64
    run_id: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


class FinishedPart(Strict):
    part: str = Field(max_length=128)
    root: str = Field(max_length=80)


class Finish(Strict):
    type: str
    parts: list[FinishedPart] = Field(max_length=100_000)
    digest: str
    size: Int64
    file_count: Int64
    description: str = ""
    metadata: dict[str, Any] | None = None
    aliases: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    run_id: str | None = None
    user: str | None = Field(None, description="recorded only by an open server (no accounts)")


def _parts(svc: Services) -> SqlParts:
    return SqlParts(svc.registry)


def _who(caller: Principal, asked: str | None) -> str | None:
    """The user recorded: the key's user; on an open server, what the client said."""
    return asked if caller.open else caller.name


def _check_run(svc: Services, caller: Principal, run_id: str) -> None:
    """The run a part or a finish is recorded with: the caller may write to its project."""
    info = svc.registry.get_run(run_id)
    try:
        svc.accounts.require(caller, info.project, "write")
    except ProjectNotFoundError:
        raise RunNotFoundError(f"no run with id {run_id!r}") from None


@router.put(BASE + "/{part}", summary="Upsert one part of a distributed version")
def upsert_part(
    project: str,
    name: str,
    distributed_id: str,
    part: str,
    body: UpsertPart,
    svc: Svc,
    caller: Caller,
) -> dict[str, Any]:
    """The part's objects (its files and tree) must have been uploaded by the caller (or be
    readable by them); they become readable by the project's readers. Sending the same part
    again replaces it (a retried task is idempotent)."""
    svc.accounts.require_writable(caller, project)
    if body.run_id is not None:
        _check_run(svc, caller, body.run_id)
    parts = _parts(svc)
    parts.ensure_project(project)
    if is_digest(body.root):
        svc.objects.bind_version(caller, project, body.root)
    fields = body.model_dump(exclude={"user", "type"})
    info = parts.upsert(
        project,
        name,
        body.type,
        distributed_id=distributed_id,
        part=part,
        **fields,
        user=_who(caller, body.user),
    )
    return info.to_dict()


@router.get(BASE, summary="The pending parts of a distributed version")
def list_parts(project: str, name: str, distributed_id: str, svc: Svc, caller: Caller) -> Any:
    svc.accounts.require(caller, project, "read")
    items = _parts(svc).list(project, name, distributed_id=distributed_id)
    return {"items": [p.to_dict() for p in items]}


@router.post(
    BASE + "/finish",
    summary="Commit the parts of a distributed version as one version",
    responses={
        200: {"description": "a live version already had this digest: it is returned"},
        201: {"description": "a new version was made"},
    },
)
def finish(
    project: str,
    name: str,
    distributed_id: str,
    body: Finish,
    response: Response,
    svc: Svc,
    caller: Caller,
) -> dict[str, Any]:
    """``digest`` is the merged tree (uploaded by the caller; the parts' objects are the
    project's already). The version is committed and exactly ``parts`` removed in one
    transaction; 409 when the pending parts differ from ``parts``."""
    svc.accounts.require_writable(caller, project)
    if body.run_id is not None:
        _check_run(svc, caller, body.run_id)
    if is_digest(body.digest):
        svc.objects.bind_version(caller, project, body.digest)
    fields = body.model_dump(exclude={"user", "type", "parts"})
    info, created = _parts(svc).finish(
        project,
        name,
        body.type,
        distributed_id=distributed_id,
        parts=[PartRef(p.part, p.root) for p in body.parts],
        **fields,
        user=_who(caller, body.user),
    )
    response.status_code = 201 if created else 200
    return {"version": info.to_dict(), "created": created}


@router.delete(BASE, summary="Discard the pending parts of a distributed version")
def discard(project: str, name: str, distributed_id: str, svc: Svc, caller: Caller) -> Any:
    svc.accounts.require(caller, project, "write")
    return {"removed": _parts(svc).discard(project, name, distributed_id=distributed_id)}
