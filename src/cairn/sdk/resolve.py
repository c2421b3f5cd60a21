"""From a reference a user writes to a version: ``name``, ``name:v3``, ``project/name:alias`` or,
when ``project`` is the name of a registry, ``registry/collection:alias`` (resolved through the
collection's link to the real version). ``at`` asks which version the reference named at a
past time, from the append-only history."""

from __future__ import annotations

from datetime import datetime

from cairn.core import names
from cairn.core.records import LinkInfo, VersionInfo
from cairn.service.registry import Registry


def resolve_ref(
    registry: Registry, text: str, default_project: str, *, at: datetime | None = None
) -> tuple[VersionInfo, LinkInfo | None]:
    """(the version, the collection link it was reached through or None)."""
    ref = names.parse_ref(text)
    if ref.project is not None and registry.is_registry(ref.project):
        link = registry.resolve_link(ref.project, ref.name, ref.ref, at=at)
        return link.target, link
    project = ref.project or default_project
    if at is not None:
        return registry.resolve_at(project, ref.name, ref.ref, at), None
    return registry.resolve(project, ref.name, ref.ref), None


def split_collection(path: str) -> tuple[str, str]:
    """``"registry/collection"`` as its two names (checked)."""
    if not isinstance(path, str) or path.count("/") != 1:
        from cairn.errors import InvalidNameError

        raise InvalidNameError(
            f"invalid collection {path!r}: write 'registry/collection', e.g. 'models/classifier'"
        )
    registry, collection = path.split("/")
    names.check_project(registry)
    names.check_artifact_name(collection)
    return registry, collection


__all__ = ["resolve_ref", "split_collection"]
