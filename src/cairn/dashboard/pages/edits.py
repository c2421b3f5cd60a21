"""Edits beyond description, aliases and tags: a version's metadata (a JSON editor, validated in
the browser and again here), a run's notes, and deleting a version (with the refusals of
`cairn artifact rm`).

Every form is a POST through `P` (the form must come from a page of this dashboard) and needs
write access to the project. A refused edit changes nothing: invalid metadata is shown again,
with the text as typed and what is wrong with it, in a page of its own (status 400, or 409 when
someone else saved the metadata since the editor was opened)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import json
from typing import Annotated, Any

from fastapi import Form
from fastapi.responses import Response

from cairn.core.records import VersionInfo
from cairn.dashboard.context import P, Pages
from cairn.dashboard.pages.versions import version_page
from cairn.errors import InvalidInputError, RunNotFoundError, StateError

pages = Pages()


def _same_metadata(base: str, metadata: dict[str, Any]) -> bool:
    """Whether ``base`` (the metadata the editor was opened on, as the page wrote it) is the
    version's metadata now: a save over newer metadata is refused rather than silently undoing
    someone else's edit."""
    try:
        return bool(json.loads(base) == metadata)
    except ValueError:
        return False


def parse_metadata(text: str) -> dict[str, Any]:
    """The metadata a JSON text gives; InvalidInputError saying where and what is wrong when it
    is not a JSON object (duplicate keys, NaN and Infinity are refused too)."""

    def no_constant(name: str) -> Any:
        raise InvalidInputError(f"{name} is not JSON (metadata must be plain JSON values)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidInputError(f"key {key!r} appears twice in one object")
            out[key] = value
        return out

    if not text.strip():
        raise InvalidInputError("the metadata is empty: write {} for no metadata")
    try:
        value = json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        raise InvalidInputError(f"the metadata must be a JSON object ({{...}}), not {kind}")
    return value


@pages.post("/p/{project}/a/{name}/v/{ref}/metadata")
def edit_metadata(
    ctx: P,
    project: str,
    name: str,
    ref: str,
    metadata: Annotated[str, Form()] = "",
    base: Annotated[str, Form()] = "",
) -> Response:
    ctx.need(project, "write")
    info = ctx.registry.resolve(project, name, ref)
    text = metadata.replace("\r\n", "\n")

    def refuse(error: str, status: int = 400) -> Response:
        return version_page(
            ctx,
            info,
            "",
            "version_metadata.html",
            status=status,
            metadata_text=text,
            metadata_error=error,
            # after a conflict the page shows the metadata now: saving again replaces it
            metadata_base=None if status == 409 else base,
        )

    if base and not _same_metadata(base, info.metadata):
        return refuse(
            "the metadata was changed by someone else since you opened the editor; nothing "
            "was saved. Your text is below: compare it with the version's metadata now and "
            "save again.",
            409,
        )
    try:
        wanted = parse_metadata(text)
        if wanted == info.metadata:
            back = ctx.urls.version(project, name, info.version)
            return ctx.redirect(back, "Metadata unchanged.")
        ctx.registry.update_version(info.id, metadata=wanted, user=ctx.viewer.name)
    except InvalidInputError as exc:
        return refuse(str(exc))
    back = ctx.urls.version(project, name, info.version)
    return ctx.redirect(back + "#metadata", "Metadata saved.")


@pages.post("/p/{project}/r/{run_id}/notes")
def edit_notes(ctx: P, project: str, run_id: str, notes: Annotated[str, Form()] = "") -> Response:
    ctx.need(project, "write")
    run = ctx.registry.get_run(run_id)
    if run.project != project:
        raise RunNotFoundError(f"project {project!r} has no run {run_id!r}")
    ctx.registry.update_run(run.id, notes=notes.replace("\r\n", "\n"))
    return ctx.redirect(ctx.urls.run(project, run.id) + "#notes", "Notes saved.")


def _user_aliases(info: VersionInfo) -> list[str]:
    return [a for a in info.aliases if a != "latest"]


@pages.post("/p/{project}/a/{name}/v/{ref}/delete")
def delete_version(
    ctx: P,
    project: str,
    name: str,
    ref: str,
    confirm: Annotated[str, Form()] = "",
    drop_aliases: Annotated[bool, Form()] = False,
) -> Response:
    """Delete the version: the form must name it (``confirm`` = vN), and a version with
    aliases is refused unless ``drop_aliases`` (as `cairn artifact rm` without --force)."""
    ctx.need(project, "write")
    info = ctx.registry.resolve(project, name, ref)
    back = ctx.urls.version(project, name, info.version)
    qn = f"{info.name}:{info.label}"
    if confirm.strip() not in (info.label, qn):
        return ctx.redirect(
            back + "#delete", f"Not deleted: type {info.label} in the box to confirm."
        )
    aliases = _user_aliases(info)
    if aliases and not drop_aliases:
        return ctx.redirect(
            back + "#delete",
            f"Not deleted: {qn} has aliases {', '.join(aliases)}. Move or remove them first, "
            "or tick 'also drop its aliases' to delete it and drop them.",
        )
    try:
        ctx.registry.delete_version(info.id, force=drop_aliases, user=ctx.viewer.name)
    except StateError as exc:  # an alias was added since the page was drawn
        now = _user_aliases(ctx.registry.get_version(info.id))
        why = f"{qn} was given aliases {', '.join(now)} meanwhile" if now else str(exc)
        return ctx.redirect(back + "#delete", f"Not deleted: {why}; look again.")
    dropped = f" and dropped its aliases {', '.join(aliases)}" if aliases else ""
    return ctx.redirect(
        ctx.urls.artifact(project, name),
        f"Deleted {qn}{dropped}. Its number is not reused; its bytes are freed by the next gc "
        "if no other version holds them.",
    )
