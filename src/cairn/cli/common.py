"""Finding what a command names, through the SDK (`Api`) and the backend's registry, and
turning records into JSON. Imported by commands at run time, so the SDK loads lazily."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cairn.cli.output import EXIT_USAGE, fail, resolve_project

if TYPE_CHECKING:
    from cairn.core.records import RunInfo, VersionInfo
    from cairn.sdk.api import Api
    from cairn.sdk.artifact import Artifact
    from cairn.sdk.backend import Backend


def backend() -> Backend:
    from cairn.sdk.backend import get_backend

    return get_backend()


def api(project: str | None) -> Api:
    from cairn.sdk.api import Api

    return Api(resolve_project(project))


def open_version(
    ref: str, project: str | None, *, explicit: bool = False, at: str | None = None
) -> Artifact:
    """The version ``[project/]name[:version-or-alias]`` (or ``registry/collection:ref``)
    names (latest when no version is given, unless ``explicit``); with ``at`` (``--at``), the
    one it named at that time."""
    from cairn.core import names

    parsed = names.parse_ref(ref)
    if explicit and ":" not in ref:
        fail(
            f"give the version to act on, e.g. '{parsed.name}:v0' or '{parsed.name}:latest'",
            EXIT_USAGE,
        )
    if at is not None:
        from cairn.cli.registry import parse_time

        return api(project).artifact(ref, at=parse_time(at))
    return api(project).artifact(ref)


def version_info(art: Artifact) -> VersionInfo:
    return backend().registry.get_version(art.id)


def iter_files(art: Artifact, prefix: str | None = None) -> Iterator[tuple[str, int, str]]:
    """(path, size, digest) of a version's files in path order, read lazily from the store
    (``Artifact.files()`` builds the whole list first). ``prefix`` is a file or a folder."""
    from cairn.core import names
    from cairn.objects import tree

    start = names.check_path(prefix) if prefix else None
    for path, entry in tree.files_below(art.digest, start, backend().object_store.get):
        yield path, entry.size, entry.digest


def split_name(ref: str, project: str | None) -> tuple[str, str]:
    """(project, name) of ``[project/]name[:ignored]``."""
    from cairn.core import names

    parsed = names.parse_ref(ref)
    return resolve_project(parsed.project or project), parsed.name


def version_json(info: VersionInfo) -> dict[str, Any]:
    data = info.to_dict()
    data["label"] = info.label
    data["qualified_name"] = info.qualified_name
    return data


def run_brief(info: RunInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "project": info.project,
        "name": info.name,
        "job_type": info.job_type,
        "state": info.state,
        "started_at": info.started_at.isoformat(),
    }


def run_label(info: RunInfo) -> str:
    job = f", {info.job_type}" if info.job_type else ""
    return f"{info.name} ({info.id}{job})"


def user_aliases(aliases: list[str]) -> list[str]:
    return [a for a in aliases if a != "latest"]
