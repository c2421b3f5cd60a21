"""Objects: batch existence checks, streamed verified uploads, reads and batch downloads, and
(with a bucket store in direct mode) signed URLs so that clients move the bytes to and from the
bucket themselves: ``POST /objects/packs`` (upload URLs), ``POST /objects/packs/{id}/commit``
(the server verifies the uploaded pack and indexes it), ``POST /objects/locate`` (where objects
are, with download URLs). ``GET /info`` says which mode a server runs in (see docs/server.md).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cairn.core.digest import hash_bytes, is_digest
from cairn.errors import (
    IntegrityError,
    InvalidInputError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from cairn.objects.packs import Upload
from cairn.server.deps import Caller, Int64, Services, Svc
from cairn.service.accounts import Principal
from cairn.wire import API_PREFIX, OBJECTS_TYPE, FrameParser

router = APIRouter(tags=["objects"])

GROUP_BYTES = 4 << 20  # objects verified and written per trip to a worker thread
GROUP_FILES = 512


class Digests(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digests: list[str]


class PackSlots(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: Int64 = 1


class PackEntries(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[tuple[str, Int64, Int64]]


def _check_digests(svc: Services, digests: list[str]) -> list[str]:
    if len(digests) > svc.settings.max_digests:
        raise PayloadTooLargeError(
            f"{len(digests)} digests in one request; send at most {svc.settings.max_digests}"
        )
    for d in digests:
        if not is_digest(d):
            raise InvalidInputError(
                f"invalid digest {d!r}: expected 'blake3:' and 64 lowercase hex digits"
            )
    return list(dict.fromkeys(digests))


def _check_digest(digest: str) -> str:
    if not is_digest(digest):
        raise InvalidInputError(
            f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
        )
    return digest


@router.post("/objects/missing", summary="Which of these objects must the caller upload?")
def missing(body: Digests, svc: Svc, caller: Caller) -> dict[str, Any]:
    """An object counts as present only when the caller may see it (it is held by a project
    they may read, or they uploaded it): an object held only by other projects is reported
    missing, so nothing is told about other projects; uploading it costs a transfer the server
    verifies and discards. ``upload`` describes the framed upload; a server with direct
    transfers (``GET /info``) also takes packs uploaded on signed URLs
    (``POST /objects/packs``). ``targets`` is always null (kept for older clients)."""
    digests = _check_digests(svc, body.digests)
    absent = svc.objects.missing(caller, digests)
    return {
        "missing": [d for d in digests if d in absent],
        "upload": {
            "method": "POST",
            "url": f"{API_PREFIX}/objects",
            "content_type": OBJECTS_TYPE,
            "max_batch_bytes": svc.settings.max_batch_bytes,
            "max_object_bytes": svc.settings.max_object_bytes,
        },
        "targets": None,
    }


async def _shielded_abort(pack: Upload) -> None:
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(pack.abort)


@router.post(
    "/objects",
    summary="Upload a batch of objects (framed, streamed)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "frames 'blake3:<hex> <length>\\n' + bytes, one per object",
            "content": {OBJECTS_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    """The body is read as it arrives, one object in memory at a time; each object is hashed
    and compared with its digest before anything is stored. The batch is stored as a whole
    once it has all arrived: a batch cut short, malformed or corrupt stores nothing.

    Needs write access to some project, and room in the caller's upload quota.
    ``stored_bytes`` counts the objects that were new to the caller (what
    ``POST /objects/missing`` would have listed), whatever other projects hold."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != OBJECTS_TYPE:
        raise InvalidInputError(
            f"send objects as {OBJECTS_TYPE} (frames 'blake3:<hex> <length>\\n' + bytes), "
            f"not {kind or 'no content type'}"
        )
    await run_in_threadpool(_may_upload, svc, caller)
    pack = await run_in_threadpool(svc.objects.open_upload)
    parser = FrameParser(svc.settings.max_object_bytes)
    group: list[tuple[str, bytearray]] = []
    group_bytes = 0
    sizes: dict[str, int] = {}
    try:
        async for chunk in request.stream():
            for digest, data in parser.feed(chunk):
                group.append((digest, data))
                sizes[digest] = len(data)
                group_bytes += len(data)
                if group_bytes >= GROUP_BYTES or len(group) >= GROUP_FILES:
                    await run_in_threadpool(svc.objects.store_group, pack, group)
                    group, group_bytes = [], 0
        parser.close()
        if group:
            await run_in_threadpool(svc.objects.store_group, pack, group)
        charged = await run_in_threadpool(_charge, svc, caller, sizes)
        await run_in_threadpool(pack.commit)
    except ClientDisconnect:
        await _shielded_abort(pack)
        return {"received": 0, "stored_bytes": 0}
    except BaseException:
        await _shielded_abort(pack)
        raise
    await run_in_threadpool(svc.quota.record, caller, charged)
    return {"received": len(sizes), "stored_bytes": sum(charged.values())}


def _may_upload(svc: Services, caller: Principal) -> None:
    """Writing bytes needs write access to some project, and room in the caller's quota."""
    roles = svc.accounts.roles(caller)
    if roles is not None and not any(r in ("write", "admin") for r in roles.values()):
        raise PermissionDeniedError(
            f"user {caller.name!r} may not write to any project, so the server stores no "
            "objects from them; ask a project's admin for write access"
        )
    svc.quota.check(caller)


def _charge(svc: Services, caller: Principal, sizes: dict[str, int]) -> dict[str, int]:
    """digest -> the bytes it counts for the caller: its size when it was new to them (as
    ``POST /objects/missing`` answers them), else 0. Raises QuotaExceededError when the new
    bytes would take them past their quota."""
    new = svc.objects.missing(caller, sizes)
    charged = {d: (n if d in new else 0) for d, n in sizes.items()}
    svc.quota.check(caller, sum(charged.values()))
    return charged


@router.put(
    "/objects/{digest}",
    summary="Upload one object (its raw bytes)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_object(digest: str, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Needs write access to some project and room in the caller's quota, as ``POST
    /objects`` does."""
    _check_digest(digest)
    await run_in_threadpool(_may_upload, svc, caller)
    limit = svc.settings.max_object_bytes
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise PayloadTooLargeError(
                f"object {digest} is larger than {limit} bytes, the most this server accepts"
            )
    if hash_bytes(data) != digest:
        raise IntegrityError(
            f"the bytes sent hash to {hash_bytes(data)}, not {digest}: nothing was stored",
            digest=digest,
        )
    pack = await run_in_threadpool(svc.objects.open_upload)
    try:
        await run_in_threadpool(svc.objects.store_group, pack, [(digest, data)])
        charged = await run_in_threadpool(_charge, svc, caller, {digest: len(data)})
        await run_in_threadpool(pack.commit)
    except BaseException:
        await _shielded_abort(pack)
        raise
    await run_in_threadpool(svc.quota.record, caller, charged)
    return {"received": 1, "stored_bytes": sum(charged.values())}


@router.get("/store/generation", summary="How many times the store dropped objects")
def store_generation(svc: Svc, caller: Caller) -> dict[str, Any]:
    """The store's drop count (gc, or objects forgotten as damaged), null when the store does
    not count them (packs on a bucket). A client that finds it unchanged knows that nothing it
    saw in the store since has gone: a log then takes folders unchanged since an earlier log
    whole (docs/architecture.md, "Whole folders")."""
    return {"generation": svc.objects.store.generation()}


@router.get(
    "/objects/{digest}",
    summary="Download one object",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_object(digest: str, svc: Svc, caller: Caller) -> Response:
    _check_digest(digest)
    svc.objects.check_readable(caller, [digest])
    return Response(svc.objects.read(digest), media_type="application/octet-stream")


@router.get(
    "/objects/{digest}/subtree",
    summary="Download an object and the tree objects below it (framed)",
    response_class=StreamingResponse,
    responses={200: {"content": {OBJECTS_TYPE: {}}}},
)
def subtree(digest: str, svc: Svc, caller: Caller) -> StreamingResponse:
    """The object first; when it is a tree (or page index), the tree objects below it follow,
    breadth-first, up to a few MiB: listing a version's files takes one request, not one per
    directory."""
    _check_digest(digest)
    svc.objects.check_readable(caller, [digest])
    return StreamingResponse(svc.objects.stream_subtree(caller, digest), media_type=OBJECTS_TYPE)


@router.post(
    "/objects/fetch",
    summary="Download a batch of objects (framed, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {OBJECTS_TYPE: {}}}},
)
def fetch(body: Digests, svc: Svc, caller: Caller) -> StreamingResponse:
    """The objects as frames, in the order asked, read from the store one at a time. Every
    object must be readable by the caller, or nothing is sent (404 naming them)."""
    digests = _check_digests(svc, body.digests)
    svc.objects.check_readable(caller, digests)
    return StreamingResponse(svc.objects.stream(digests), media_type=OBJECTS_TYPE)


@router.post(
    "/objects/packs",
    summary="Signed URLs to upload packs of objects straight to the bucket (direct mode)",
)
def new_packs(body: PackSlots, svc: Svc, caller: Caller) -> dict[str, Any]:
    """For callers allowed to write to at least one project: ``count`` upload slots, each an
    ``id`` and a signed ``url`` (``method`` PUT, with ``headers``) valid until ``expires_at``
    (Unix time). Upload a pack (objects back to back, at most ``max_bytes``) there, then
    commit it. An expired URL is not renewed: ask for a new slot."""
    return svc.objects.new_slots(caller, body.count)


@router.post(
    "/objects/packs/{slot}/commit",
    summary="Verify and index a pack uploaded on a signed URL (direct mode)",
)
def commit_pack(slot: str, body: PackEntries, svc: Svc, caller: Caller) -> dict[str, Any]:
    """``entries``: ``[digest, offset, length]`` of every object in the uploaded pack. The
    server reads the pack from the bucket and hashes every listed object; one that does not
    match its digest rejects the whole pack (400) and nothing is stored. Then the objects
    count as uploaded by the caller, as with ``POST /objects``."""
    if len(body.entries) > svc.settings.max_digests:
        raise PayloadTooLargeError(
            f"{len(body.entries)} objects in one pack; send at most {svc.settings.max_digests}"
        )
    for digest, _offset, _length in body.entries:
        _check_digest(digest)
    sizes = {d: n for d, _, n in body.entries}
    svc.quota.check(caller)
    charged = _charge(svc, caller, sizes)
    reply = svc.objects.commit_slot(caller, slot, body.entries)
    svc.quota.record(caller, charged)
    # what was new to the caller, not what the bucket lacked (that would tell them what other
    # projects hold)
    reply["stored"] = sum(1 for n in charged.values() if n)
    reply["stored_bytes"] = sum(charged.values())
    return reply


@router.post(
    "/objects/locate",
    summary="Where objects are in the bucket, with signed download URLs (direct mode)",
)
def locate(body: Digests, svc: Svc, caller: Caller) -> dict[str, Any]:
    """``objects``: digest -> ``[pack, offset, length]``; ``packs``: pack -> signed GET URL
    (read the byte ranges with ``Range`` requests), valid until ``expires_at``. Every object
    must be readable by the caller, or nothing is answered (404 naming them, no URL)."""
    digests = _check_digests(svc, body.digests)
    return svc.objects.locate(caller, digests)


__all__ = ["router"]
