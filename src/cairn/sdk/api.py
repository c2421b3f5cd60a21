"""`Api`: read (and edit) what is stored, outside of any run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from cairn import config
from cairn.core import names
from cairn.core.records import (
    ArtifactInfo,
    AuditRecord,
    CollectionHistoryEntry,
    CollectionInfo,
    LineageGraph,
    LinkInfo,
    ProjectInfo,
    RegistryInfo,
    RunInfo,
    RunState,
)
from cairn.errors import InvalidInputError, InvalidNameError, NotFoundError
from cairn.objects.usage import exclusive_bytes
from cairn.sdk.artifact import Artifact, artifact_at
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.resolve import resolve_ref, split_collection
from cairn.sdk.run import Run, run_view
from cairn.service.registry import Direction
from cairn.service.retention import Policy, RetentionReport, Target, changes_of, ttl_seconds


class _Keep:
    """A rule `Api.set_retention` was not given: left as it is."""


_KEEP = _Keep()


class Api:
    """Query the registry: ``Api().artifact("project/name:v1")``."""

    def __init__(self, project: str | None = None) -> None:
        self._backend: Backend = get_backend()
        self.default_project = project or config.default_project() or "default"

    def _project(self, project: str | None) -> str:
        return names.check_project(project or self.default_project)

    def projects(self) -> list[ProjectInfo]:
        return self._backend.registry.list_projects()

    def artifact(
        self, name: str, type: str | None = None, *, at: datetime | None = None
    ) -> Artifact:
        """A stored version: ``"project/name:ref"``, or ``"registry/collection:ref"`` through
        the collection's link. ``at`` (a timezone-aware datetime): the version the reference
        named at that time, e.g. ``Api().artifact("models/classifier:production", at=...)``."""
        info, _ = resolve_ref(self._backend.registry, name, self._project(None), at=at)
        if type is not None and info.type != type:
            raise InvalidInputError(f"{info.qualified_name} has type {info.type!r}, not {type!r}")
        return artifact_at(info, self._backend)

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
        self,
        name: str,
        project: str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        order: str | Sequence[str] | None = "-version",
        tags: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Artifact]:
        """Live versions of an artifact (or of a registry's collection, ``"models/clf"``),
        newest first; ``order`` is "-version", "version", "-created_at", "created_at" or any
        field of the search language ("-metadata.acc"); ``tags=[...]`` keeps versions having
        every tag; ``filters`` searches them, e.g. ``filters={"metadata.acc": {"$gt": 0.9}}``
        (the language is in docs/concepts.md, Search)."""
        ref = names.parse_ref(name)
        registry = self._backend.registry
        if tags:
            if isinstance(tags, str):
                raise InvalidInputError("tags are a list, e.g. tags=['clean']")
            for t in tags:
                names.check_tag(t)  # a misspelt tag is an error, not an empty answer
            wanted: dict[str, Any] = {"tags": {"$all": list(tags)}}
            filters = {"$and": [filters, wanted]} if filters else wanted
        if ref.project is not None and project is None and registry.is_registry(ref.project):
            links = registry.search_links(
                ref.project,
                collection=ref.name,
                filters=filters,
                order=None if order == "-version" else order,
                limit=limit,
                offset=offset,
            )
            return [artifact_at(x.target, self._backend) for x in links]
        project = self._project(project or ref.project)
        simple = ("-version", "version", "-created_at", "created_at")
        if filters is None and (order is None or order in simple):
            found = registry.list_versions(
                project, ref.name, limit=limit, offset=offset, order=str(order or "-version")
            )
        else:
            found = registry.search_versions(
                project=project,
                name=ref.name,
                filters=filters,
                order=order,
                limit=limit,
                offset=offset,
            )
        return [artifact_at(v, self._backend) for v in found]

    def search(
        self,
        filters: dict[str, Any] | None = None,
        order: str | Sequence[str] | None = None,
        *,
        project: str | None = None,
        registry: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Artifact]:
        """Versions across a project (default: every project you can read) or a registry,
        matching ``filters``, in ``order`` (default newest first)."""
        reg = self._backend.registry
        if registry is not None:
            links = reg.search_links(
                registry, filters=filters, order=order, limit=limit, offset=offset
            )
            return [artifact_at(x.target, self._backend) for x in links]
        found = reg.search_versions(
            project=names.check_project(project) if project is not None else None,
            filters=filters,
            order=order,
            limit=limit,
            offset=offset,
        )
        return [artifact_at(v, self._backend) for v in found]

    # --- retention -----------------------------------------------------------------------------
    def set_retention(
        self,
        name: str | None = None,
        *,
        ttl: timedelta | Literal["inherit"] | _Keep | None = _KEEP,
        keep_last: int | _Keep | None = _KEEP,
        keep_best: int | _Keep | None = _KEEP,
        by: str | _Keep | None = _KEEP,
        keep_used_days: int | _Keep | None = _KEEP,
    ) -> Policy:
        """Retention rules of an artifact (``"name"``, ``"project/name"``), of the project
        (no name: defaults for its artifacts), or of a registry collection
        (``"registry/collection"``: a TTL for its links). Only the rules given change; ``None``
        clears a keep rule, ``ttl=None`` means never expire, ``ttl="inherit"`` clears the TTL.
        ``by``: the metadata key ``keep_best`` ranks by, lowest first; ``"-key"`` highest
        first. Nothing is deleted until `apply_retention` (or a server's schedule)."""
        changes: dict[str, Any] = {}
        if not isinstance(ttl, _Keep):
            changes["ttl_seconds"] = (
                None if isinstance(ttl, str) and ttl == "inherit" else ttl_seconds(ttl)
            )
        for field, value in (
            ("keep_last", keep_last), ("keep_best", keep_best), ("keep_used_days", keep_used_days)
        ):  # fmt: skip
            if not isinstance(value, _Keep):
                changes[field] = value
        if isinstance(by, str):
            changes.update(changes_of(by=by))
        elif by is None:
            changes.update(best_key=None, best_order=None)
        return self._backend.retention.set_policy(self._retention_target(name), changes)

    def _retention_target(self, name: str | None) -> Target:
        if name is None:
            return Target(project=self._project(None))
        ref = names.parse_ref(name)
        if ref.project is not None and self._backend.registry.is_registry(ref.project):
            return Target(registry=ref.project, collection=ref.name)
        return Target(project=self._project(ref.project), artifact=ref.name)

    def retention_policies(
        self, project: str | None = None, *, registry: str | None = None
    ) -> list[Policy]:
        """The retention policies of a project (its own and its artifacts') or a registry."""
        if registry is not None:
            return self._backend.retention.policies(registry=registry)
        return self._backend.retention.policies(project=self._project(project))

    def apply_retention(
        self, project: str | None = None, *, dry_run: bool = False
    ) -> RetentionReport:
        """Delete what the TTLs and policies say (of one project, or all), or with ``dry_run``
        only report it: which versions, why, and the bytes gc would free (shared objects stay).
        Through a server, server administrators only."""
        from cairn.service.sql.retention import SqlRetention  # SQLAlchemy: only when needed

        retention = self._backend.retention
        if isinstance(retention, SqlRetention):
            object_store = self._backend.object_store

            def measure(dropped: list[str], kept: list[str], leaves: list[str]) -> tuple[int, int]:
                return exclusive_bytes(
                    lambda d: object_store.get(d, verify=False), dropped, kept, leaves
                )

            return retention.apply(project=project, dry_run=dry_run, measure=measure)
        return retention.apply(project=project, dry_run=dry_run)

    # --- registries ----------------------------------------------------------------------------
    def create_registry(
        self, name: str, description: str = "", protected_aliases: Sequence[str] = ()
    ) -> RegistryInfo:
        """A registry above projects (``models``); ``protected_aliases`` (e.g.
        ``["production"]``) may be set or moved only by its maintainers and admins."""
        return self._backend.registry.create_registry(
            name, description=description, protected_aliases=list(protected_aliases)
        )

    def registries(self) -> list[RegistryInfo]:
        return self._backend.registry.list_registries()

    def registry(self, name: str) -> RegistryInfo:
        return self._backend.registry.get_registry(name)

    def collections(self, registry: str, limit: int = 100, offset: int = 0) -> list[CollectionInfo]:
        return self._backend.registry.list_collections(registry, limit=limit, offset=offset)

    def collection(self, path: str) -> CollectionInfo:
        registry, collection = split_collection(path)
        return self._backend.registry.get_collection(registry, collection)

    def collection_versions(self, path: str, limit: int = 100, offset: int = 0) -> list[LinkInfo]:
        """The collection's linked versions, newest first (``link.target`` is the version)."""
        registry, collection = split_collection(path)
        return self._backend.registry.list_links(registry, collection, limit=limit, offset=offset)

    def collection_history(self, path: str) -> list[CollectionHistoryEntry]:
        """Links, unlinks and alias moves of a collection, oldest first."""
        registry, collection = split_collection(path)
        return self._backend.registry.collection_history(registry, collection)

    def set_aliases(
        self,
        name: str,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> LinkInfo:
        """Add aliases to a collection version (``"models/clf:v3"``), moving them from other
        versions, and remove some."""
        ref = names.parse_ref(name)
        if ref.project is None:
            raise InvalidNameError(
                f"name a collection version as 'registry/collection:vN', not {name!r}"
            )
        return self._backend.registry.set_link_aliases(
            ref.project, ref.name, ref.ref, add=list(add), remove=list(remove)
        )

    def unlink(self, name: str) -> LinkInfo:
        """Unlink a collection version (``"models/clf:v3"``); recorded in its history."""
        ref = names.parse_ref(name)
        if ref.project is None:
            raise InvalidNameError(
                f"name a collection version as 'registry/collection:vN', not {name!r}"
            )
        return self._backend.registry.unlink_version(ref.project, ref.name, ref.ref)

    def audit_log(
        self,
        user: str | None = None,
        project: str | None = None,
        registry: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """The audit log of a server (administrators), oldest first."""
        return self._backend.registry.audit_log(
            user=user,
            project=project,
            registry=registry,
            action=action,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        """Whether ``[project/]name[:version or alias]`` names a live version (of ``type``)."""
        try:
            Api.artifact(self, name, type)
        except (NotFoundError, InvalidInputError):
            return False
        return True

    def artifact_collection(self, name: str, type: str | None = None) -> ArtifactCollection:
        """The artifact itself, with all its versions ("collection" in W&B): rename it,
        change its type, description or tags, delete every version."""
        return self._collection(name, type)

    def _collection(self, name: str, type: str | None) -> ArtifactCollection:
        ref = names.parse_ref(name)
        info = self._backend.registry.get_artifact(self._project(ref.project), ref.name)
        if type is not None and info.type != type:
            raise InvalidInputError(
                f"artifact {info.project}/{info.name} has type {info.type!r}, not {type!r}"
            )
        return ArtifactCollection(info, self._backend)

    def artifact_collection_exists(self, name: str, type: str | None = None) -> bool:
        """Whether the artifact has live versions (of ``type`` when given)."""
        try:
            collection = self._collection(name, type)
        except (NotFoundError, InvalidInputError):
            return False
        return collection.version_count > 0

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
        return [run_view(i, self._backend) for i in infos]

    def run(self, run_id: str) -> Run:
        info: RunInfo = self._backend.registry.get_run(run_id)
        return run_view(info, self._backend)

    def lineage(
        self, name: str, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        return self.artifact(name).lineage(direction=direction, depth=depth)


class ArtifactCollection:
    """An artifact with all its versions (W&B's "artifact collection"). Edit ``name``,
    ``type``, ``description`` and ``tags``, then ``save()``; ``delete()`` deletes every
    version. Its versions, aliases and lineage follow a rename."""

    def __init__(self, info: ArtifactInfo, backend: Backend) -> None:
        self._backend = backend
        self._set(info)

    def _set(self, info: ArtifactInfo) -> None:
        self._info = info
        self.project = info.project
        self.name = info.name
        self.type = info.type
        self.description = info.description
        self.tags = list(info.tags)

    def __repr__(self) -> str:
        return f"<ArtifactCollection {self.project}/{self._info.name} ({self._info.type})>"

    @property
    def created_at(self) -> datetime:
        return self._info.created_at

    @property
    def updated_at(self) -> datetime:
        return self._info.updated_at

    @property
    def version_count(self) -> int:
        return self._info.version_count

    def is_sequence(self) -> bool:
        """Always True: every Cairn artifact is a sequence of versions."""
        return True

    def versions(
        self, *, order: str = "-version", tags: Sequence[str] | None = None, limit: int = 1000
    ) -> list[Artifact]:
        """Live versions, newest first (see `Api.artifact_versions`)."""
        infos = self._backend.registry.list_versions(
            self.project, self._info.name, limit=limit, order=order, tags=tags
        )
        return [artifact_at(v, self._backend) for v in infos]

    artifacts = versions

    @property
    def aliases(self) -> list[str]:
        """Every alias on a live version, 'latest' included."""
        return sorted({a for v in self.versions() for a in v.aliases})

    def save(self) -> ArtifactCollection:
        """Apply changes to name, type, description and tags."""
        from cairn.sdk import run as run_module

        if isinstance(self.tags, str):
            raise InvalidInputError("tags are a list, e.g. tags=['curated']")
        info = self._info
        current = run_module.current_run()
        new = self._backend.registry.update_artifact(
            self.project,
            info.name,
            new_name=self.name if self.name != info.name else None,
            type=self.type if self.type != info.type else None,
            description=self.description if self.description != info.description else None,
            tags=list(self.tags) if list(self.tags) != info.tags else None,
            run_id=current.id if current is not None and current._active else None,
        )
        self._set(new)
        return self

    def change_type(self, type: str) -> ArtifactCollection:
        self.type = type
        return self.save()

    def delete(self) -> int:
        """Delete every live version (their aliases dropped); returns how many."""
        from cairn.sdk import run as run_module

        current = run_module.current_run()
        run_id = current.id if current is not None and current._active else None
        count = self._backend.registry.delete_artifact(self.project, self._info.name, run_id=run_id)
        self._set(self._backend.registry.get_artifact(self.project, self._info.name))
        return count
