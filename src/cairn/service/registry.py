"""The metadata contract: projects, runs, artifacts, versions, aliases, history, lineage.

`Registry` is what the SDK calls. `SqlRegistry` (cairn.service.sql) implements it on
SQLAlchemy for the embedded mode and the server; the remote client implements it over HTTP.
Every method validates its input and raises the typed errors of `cairn.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from cairn.core.records import (
    ArtifactInfo,
    AuditRecord,
    CollectionHistoryEntry,
    CollectionInfo,
    HistoryEntry,
    LineageGraph,
    LinkInfo,
    MetricRow,
    ProjectInfo,
    RegistryInfo,
    RunInfo,
    RunState,
    VersionInfo,
)

Direction = Literal["up", "down", "both"]


class Registry(Protocol):
    # --- projects -------------------------------------------------------------------------
    def list_projects(self) -> list[ProjectInfo]: ...

    # --- runs -----------------------------------------------------------------------------
    def create_run(
        self,
        project: str,
        *,
        name: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        notes: str = "",
        host: str = "",
        python_version: str = "",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        git_diff_digest: str | None = None,
        user: str | None = None,
    ) -> RunInfo:
        """Create the project if needed and a run in state 'running'. name defaults to a
        generated readable name unique within the project. ``user`` is who started it (the
        server passes the API key's user)."""
        ...

    def update_run(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        summary: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        failure: str | None = None,
        git_diff_digest: str | None = None,
    ) -> RunInfo:
        """Setting a final state also sets finished_at; ``failure`` says why a run failed or
        crashed (kept with a final state only); ``git_diff_digest`` records the uncommitted
        changes of the code (an object already stored) when the run was started without them.
        Raises RunFinishedError when the run is already finished/failed/crashed (except
        updating summary/notes/tags)."""
        ...

    def log_metrics(self, run_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None: ...

    def get_run(self, run_id: str) -> RunInfo: ...

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunInfo]:
        """The runs with these ids, by id (ids of no run are left out): one query for a page
        that names many runs."""
        ...

    def list_runs(
        self,
        project: str,
        *,
        job_type: str | None = None,
        state: RunState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        """Newest first."""
        ...

    def run_metrics(self, run_id: str) -> list[MetricRow]: ...

    # --- artifacts and versions -------------------------------------------------------------
    def commit_version(
        self,
        project: str,
        name: str,
        type: str,
        *,
        digest: str,
        size: int,
        file_count: int,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
    ) -> tuple[VersionInfo, bool]:
        """Record a version whose objects are already stored. Atomic, safe under concurrency.

        If a live version of this artifact already has `digest`, no version is made: the
        aliases/tags asked for are applied to it (recorded in history) and (it, False) is
        returned. Otherwise the next version number (max ever used + 1, never reused) is taken
        and (new, True) returned. Aliases move from other versions. The run gets an output
        edge in both cases. Raises InvalidNameError for a type that differs from the
        artifact's existing type. History records ``user`` (default: the run's user).
        """
        ...

    def resolve(self, project: str, name: str, ref: str = "latest") -> VersionInfo:
        """ref: 'latest', 'vN', an alias, or a digest ('blake3:...'). ArtifactNotFoundError
        names what exists when nothing matches."""
        ...

    def get_version(self, version_id: int) -> VersionInfo: ...

    def list_artifacts(
        self,
        project: str,
        *,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ArtifactInfo]: ...

    def list_versions(
        self,
        project: str,
        name: str,
        *,
        limit: int = 100,
        offset: int = 0,
        order: str = "-version",
        tags: Sequence[str] | None = None,
    ) -> list[VersionInfo]:
        """Live versions, newest first; ``order`` is "-version" (default), "version",
        "-created_at" or "created_at"; with ``tags``, only versions having every one."""
        ...

    def get_artifact(self, project: str, name: str) -> ArtifactInfo:
        """An artifact (its versions counted), ArtifactNotFoundError when it does not exist."""
        ...

    def update_artifact(
        self,
        project: str,
        name: str,
        *,
        new_name: str | None = None,
        type: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> ArtifactInfo:
        """Rename an artifact, change its type, its own description or tags (the full list).
        Its versions, aliases and lineage follow; a rename or a change of type is recorded in
        the history of every version (fields "name" and "type"). ConflictError when
        ``new_name`` is taken."""
        ...

    def delete_artifact(
        self,
        project: str,
        name: str,
        *,
        run_id: str | None = None,
        user: str | None = None,
    ) -> int:
        """Delete every live version (aliases dropped, each recorded in its history); returns
        how many. The artifact keeps its name and numbering: a new log makes the next vN."""
        ...

    def update_version(
        self,
        version_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> VersionInfo:
        """Set the given fields (aliases/tags are the full desired lists, without 'latest').
        Each changed field appends one HistoryEntry."""
        ...

    def add_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> tuple[VersionInfo, int | None]:
        """Point ``alias`` at the version, in one transaction (concurrent edits of the same
        version are never lost). Returns the version and the number (N of vN) of the other
        version of the artifact the alias moved from, None when none had it."""
        ...

    def remove_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        """Remove ``alias`` from the version, in one transaction; ArtifactNotFoundError when
        the version does not have it."""
        ...

    def add_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        """Add ``tag`` to the version (nothing changes when it has it), in one transaction."""
        ...

    def remove_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        """Remove ``tag`` from the version, in one transaction; ArtifactNotFoundError when the
        version does not have it."""
        ...

    def delete_version(
        self,
        version_id: int,
        *,
        force: bool = False,
        run_id: str | None = None,
        user: str | None = None,
    ) -> None:
        """Mark deleted (its number is never reused). Refuses a version with user aliases
        unless force (StateError)."""
        ...

    def history(self, version_id: int) -> list[HistoryEntry]:
        """Oldest first; the first entry is field='created'."""
        ...

    # --- lineage ----------------------------------------------------------------------------
    def record_use(self, run_id: str, version_id: int) -> None:
        """Input edge run <- version. Idempotent."""
        ...

    def logged_by(self, version_id: int) -> RunInfo | None: ...

    def used_by(self, version_id: int) -> list[RunInfo]: ...

    def run_inputs(self, run_id: str) -> list[VersionInfo]: ...

    def run_outputs(self, run_id: str) -> list[VersionInfo]: ...

    def lineage(
        self, version_id: int, *, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        """Runs and versions reachable from the version. Edges: version -> run that used it,
        run -> version it logged. depth counts edges; None means unbounded."""
        ...

    def versions_with_digest(self, digest: str) -> list[VersionInfo]:
        """Live versions of any artifact whose digest is `digest` (used by gc and dedup)."""
        ...

    def all_root_digests(self) -> list[str]:
        """Digests of every live version (gc marks from these)."""
        ...

    # --- registries, collections and links (see cairn.service.sql.registries) ------------------
    def create_registry(
        self,
        name: str,
        *,
        description: str = "",
        protected_aliases: Sequence[str] = (),
        user: str | None = None,
    ) -> RegistryInfo: ...

    def get_registry(self, name: str) -> RegistryInfo: ...

    def is_registry(self, name: str) -> bool: ...

    def list_registries(self) -> list[RegistryInfo]: ...

    def update_registry(
        self,
        name: str,
        *,
        description: str | None = None,
        protected_aliases: Sequence[str] | None = None,
        user: str | None = None,
    ) -> RegistryInfo: ...

    def registry_members(self, name: str) -> dict[str, str]: ...

    def set_registry_member(
        self, name: str, member: str, role: str | None, *, user: str | None = None
    ) -> None: ...

    def link_version(
        self,
        registry: str,
        collection: str,
        version_id: int,
        *,
        aliases: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
        allow_protected: bool = True,
    ) -> LinkInfo:
        """Link a version into ``registry/collection`` without copying bytes."""
        ...

    def unlink_version(
        self,
        registry: str,
        collection: str,
        ref: str,
        *,
        run_id: str | None = None,
        user: str | None = None,
        allow_protected: bool = True,
    ) -> LinkInfo: ...

    def set_link_aliases(
        self,
        registry: str,
        collection: str,
        ref: str,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
        allow_protected: bool = True,
    ) -> LinkInfo: ...

    def resolve_link(
        self, registry: str, collection: str, ref: str = "latest", *, at: datetime | None = None
    ) -> LinkInfo:
        """The collection version ``ref`` names (at time ``at``, when given)."""
        ...

    def list_collections(
        self, registry: str, *, limit: int = 100, offset: int = 0
    ) -> list[CollectionInfo]: ...

    def get_collection(self, registry: str, collection: str) -> CollectionInfo: ...

    def list_links(
        self, registry: str, collection: str, *, limit: int = 100, offset: int = 0
    ) -> list[LinkInfo]: ...

    def update_collection(
        self,
        registry: str,
        collection: str,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> CollectionInfo: ...

    def collection_history(
        self, registry: str, collection: str
    ) -> list[CollectionHistoryEntry]: ...

    def links_of(self, version_id: int) -> list[LinkInfo]: ...

    # --- search and as-of -------------------------------------------------------------------
    def search_versions(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        filters: dict[str, Any] | None = None,
        order: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[VersionInfo]:
        """Versions matching ``filters`` (the language of `cairn.service.search`)."""
        ...

    def search_links(
        self,
        registry: str,
        *,
        collection: str | None = None,
        filters: dict[str, Any] | None = None,
        order: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LinkInfo]: ...

    def resolve_at(self, project: str, name: str, ref: str, at: datetime) -> VersionInfo:
        """The version ``ref`` named at time ``at`` (from the history)."""
        ...

    def audit_log(
        self,
        *,
        user: str | None = None,
        project: str | None = None,
        registry: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]: ...

    def close(self) -> None: ...


__all__ = ["Direction", "Registry", "datetime"]
