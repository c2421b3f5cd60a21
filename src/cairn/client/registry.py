"""`RemoteRegistry`: the `Registry` contract over HTTP.

Each method is one request (lists follow the server's pages), and raises the same
`cairn.errors` class with the same message as `SqlRegistry` would: the server runs SqlRegistry
and sends its errors back in the JSON error shape. Values JSON cannot carry are checked here
with SqlRegistry's own checks, so their errors are the same too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from cairn.client.http import Http
from cairn.core.names import check_artifact_name, check_project
from cairn.core.records import (
    ArtifactInfo,
    AuditRecord,
    CollectionHistoryEntry,
    CollectionInfo,
    HistoryEntry,
    LineageEdge,
    LineageGraph,
    LineageNode,
    LinkInfo,
    MetricRow,
    ProjectInfo,
    RegistryInfo,
    RunInfo,
    RunState,
    VersionInfo,
)
from cairn.errors import InvalidInputError, InvalidNameError, RunNotFoundError
from cairn.service.registry import Direction, Registry
from cairn.service.search import parse_filters, parse_order
from cairn.service.validate import (
    check_int,
    check_order,
    check_tags,
    decode_metric,
    encode_metric,
    json_dict,
)

PAGE = 1000  # items asked per page (the server's largest)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _run_seg(run_id: object) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise RunNotFoundError(
            f"no run with id {run_id!r}: check the id (list runs with list_runs(project))"
        )
    return _seg(run_id)


def _version_seg(version_id: object) -> str:
    check_int("version id", version_id)
    return str(version_id)


def _json_or_none(kind: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else json_dict(kind, value)


def _listish(value: Sequence[str] | None) -> Any:
    """A sequence as a JSON list; anything else as given (the server reports it)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return list(value)
    except TypeError:
        return value


class RemoteRegistry:
    def __init__(self, http: Http) -> None:
        self.http = http

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.http.origin!r})"

    # --- plumbing -------------------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        return self.http.json("GET", path, params=params)

    def _list(
        self, path: str, params: dict[str, Any], limit: Any = None, offset: Any = 0
    ) -> list[Any]:
        """Items of a list: ``limit`` of them from ``offset`` (None: all), across pages."""
        first = PAGE if limit is None else (min(limit, PAGE) if isinstance(limit, int) else limit)
        data = self._get(path, **params, limit=first, offset=offset)
        items: list[Any] = list(data["items"])
        while data.get("next") and (limit is None or len(items) < limit):
            data = self.http.json("GET", data["next"])
            if not data["items"]:
                break
            items.extend(data["items"])
        return items if limit is None else items[:limit]

    # --- projects -------------------------------------------------------------------------------
    def list_projects(self) -> list[ProjectInfo]:
        return [ProjectInfo.from_dict(p) for p in self._list("/projects", {})]

    # --- runs -----------------------------------------------------------------------------------
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
        check_project(project)
        body = {
            "name": name,
            "job_type": job_type,
            "config": _json_or_none("config", config),
            "tags": _listish(tags),
            "notes": notes,
            "host": host,
            "python_version": python_version,
            "git_commit": git_commit,
            "git_dirty": git_dirty,
            "git_diff_digest": git_diff_digest,
            "user": user,
        }
        data = self.http.json("POST", f"/projects/{project}/runs", json=body)
        return RunInfo.from_dict(data)

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
        body = {
            "state": state,
            "summary": _json_or_none("summary", summary),
            "config": _json_or_none("config", config),
            "tags": _listish(tags),
            "notes": notes,
            "failure": failure,
        }
        if git_diff_digest is not None:  # only when set: older servers refuse the field
            body["git_diff_digest"] = git_diff_digest
        data = self.http.json("PATCH", f"/runs/{_run_seg(run_id)}", json=body)
        return RunInfo.from_dict(data)

    def log_metrics(self, run_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        prepared: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            if not isinstance(row, tuple | list) or len(row) != 2:
                raise InvalidInputError(f"metric rows are (step, dict) pairs, not {row!r}")
            step = check_int("step", row[0], minimum=None)
            prepared.append((step, json_dict(f"metrics at step {step}", encode_metric(row[1]))))
        path = f"/runs/{_run_seg(run_id)}/metrics"
        for start in range(0, max(len(prepared), 1), 5000):
            self.http.json("POST", path, json={"rows": prepared[start : start + 5000]})

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_dict(self._get(f"/runs/{_run_seg(run_id)}"))

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunInfo]:
        found: dict[str, RunInfo] = {}
        for run_id in dict.fromkeys(run_ids):
            try:
                found[run_id] = self.get_run(run_id)
            except RunNotFoundError:
                pass
        return found

    def list_runs(
        self,
        project: str,
        *,
        job_type: str | None = None,
        state: RunState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        check_project(project)
        params = {"job_type": job_type, "state": state}
        items = self._list(f"/projects/{project}/runs", params, limit, offset)
        return [RunInfo.from_dict(r) for r in items]

    def run_metrics(self, run_id: str) -> list[MetricRow]:
        items = self._list(f"/runs/{_run_seg(run_id)}/metrics", {})
        return [MetricRow.from_dict({**m, "data": decode_metric(m["data"])}) for m in items]

    # --- artifacts and versions -----------------------------------------------------------------
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
        check_project(project)
        check_artifact_name(name)
        body = {
            "type": type,
            "digest": digest,
            "size": size,
            "file_count": file_count,
            "description": description,
            "metadata": _json_or_none("metadata", metadata),
            "aliases": _listish(aliases),
            "tags": _listish(tags),
            "run_id": run_id,
            "user": user,
        }
        data = self.http.json("POST", f"/projects/{project}/artifacts/{name}/versions", json=body)
        return VersionInfo.from_dict(data["version"]), bool(data["created"])

    def resolve(self, project: str, name: str, ref: str = "latest") -> VersionInfo:
        check_project(project)
        check_artifact_name(name)
        if not isinstance(ref, str) or not ref:
            raise InvalidNameError(f"invalid version reference {ref!r}")
        path = f"/projects/{project}/artifacts/{name}/versions/{_seg(ref)}"
        return VersionInfo.from_dict(self._get(path))

    def get_version(self, version_id: int) -> VersionInfo:
        return VersionInfo.from_dict(self._get(f"/versions/{_version_seg(version_id)}"))

    def list_artifacts(
        self,
        project: str,
        *,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ArtifactInfo]:
        check_project(project)
        params = {"type": type, "search": search}
        items = self._list(f"/projects/{project}/artifacts", params, limit, offset)
        return [ArtifactInfo.from_dict(a) for a in items]

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
        check_project(project)
        check_artifact_name(name)
        check_order(order)
        params: dict[str, Any] = {"order": order, "tag": check_tags(tags)}
        items = self._list(f"/projects/{project}/artifacts/{name}/versions", params, limit, offset)
        return [VersionInfo.from_dict(v) for v in items]

    def get_artifact(self, project: str, name: str) -> ArtifactInfo:
        check_project(project)
        check_artifact_name(name)
        return ArtifactInfo.from_dict(self._get(f"/projects/{project}/artifacts/{name}"))

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
        check_project(project)
        check_artifact_name(name)
        body = {
            "name": new_name,
            "type": type,
            "description": description,
            "tags": _listish(tags),
            "run_id": run_id,
            "user": user,
        }
        data = self.http.json("PATCH", f"/projects/{project}/artifacts/{name}", json=body)
        return ArtifactInfo.from_dict(data)

    def delete_artifact(
        self,
        project: str,
        name: str,
        *,
        run_id: str | None = None,
        user: str | None = None,
    ) -> int:
        check_project(project)
        check_artifact_name(name)
        params = {"run_id": run_id, "user": user}
        data = self.http.json("DELETE", f"/projects/{project}/artifacts/{name}", params=params)
        return int(data["deleted"])

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
        body = {
            "description": description,
            "metadata": _json_or_none("metadata", metadata),
            "aliases": _listish(aliases),
            "tags": _listish(tags),
            "run_id": run_id,
            "user": user,
        }
        data = self.http.json("PATCH", f"/versions/{_version_seg(version_id)}", json=body)
        return VersionInfo.from_dict(data)

    def add_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> tuple[VersionInfo, int | None]:
        body = {"alias": alias, "run_id": run_id, "user": user}
        data = self.http.json("POST", f"/versions/{_version_seg(version_id)}/aliases", json=body)
        moved = data.get("moved_from")
        return VersionInfo.from_dict(data["version"]), (int(moved) if moved is not None else None)

    def remove_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        data = self.http.json(
            "DELETE",
            f"/versions/{_version_seg(version_id)}/aliases/{_seg(alias)}",
            params={"run_id": run_id, "user": user},
        )
        return VersionInfo.from_dict(data)

    def add_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        body = {"tag": tag, "run_id": run_id, "user": user}
        data = self.http.json("POST", f"/versions/{_version_seg(version_id)}/tags", json=body)
        return VersionInfo.from_dict(data)

    def remove_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        data = self.http.json(
            "DELETE",
            f"/versions/{_version_seg(version_id)}/tags/{_seg(tag)}",
            params={"run_id": run_id, "user": user},
        )
        return VersionInfo.from_dict(data)

    def delete_version(
        self,
        version_id: int,
        *,
        force: bool = False,
        run_id: str | None = None,
        user: str | None = None,
    ) -> None:
        params = {"force": "true" if force else "false", "run_id": run_id, "user": user}
        self.http.json("DELETE", f"/versions/{_version_seg(version_id)}", params=params)

    def history(self, version_id: int) -> list[HistoryEntry]:
        items = self._list(f"/versions/{_version_seg(version_id)}/history", {})
        return [HistoryEntry.from_dict(h) for h in items]

    # --- lineage --------------------------------------------------------------------------------
    def record_use(self, run_id: str, version_id: int) -> None:
        check_int("version id", version_id)
        self.http.json("POST", f"/runs/{_run_seg(run_id)}/inputs", json={"version_id": version_id})

    def logged_by(self, version_id: int) -> RunInfo | None:
        data = self._get(f"/versions/{_version_seg(version_id)}/logged-by")
        return RunInfo.from_dict(data["run"]) if data["run"] else None

    def used_by(self, version_id: int) -> list[RunInfo]:
        items = self._list(f"/versions/{_version_seg(version_id)}/used-by", {})
        return [RunInfo.from_dict(r) for r in items]

    def run_inputs(self, run_id: str) -> list[VersionInfo]:
        items = self._list(f"/runs/{_run_seg(run_id)}/inputs", {})
        return [VersionInfo.from_dict(v) for v in items]

    def run_outputs(self, run_id: str) -> list[VersionInfo]:
        items = self._list(f"/runs/{_run_seg(run_id)}/outputs", {})
        return [VersionInfo.from_dict(v) for v in items]

    def lineage(
        self, version_id: int, *, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        if direction not in ("up", "down", "both"):
            raise InvalidInputError(
                f"invalid lineage direction {direction!r}: use 'up', 'down' or 'both'"
            )
        if depth is not None:
            check_int("depth", depth)
        data = self._get(
            f"/versions/{_version_seg(version_id)}/lineage", direction=direction, depth=depth
        )
        return LineageGraph(
            root=data["root"],
            nodes=[LineageNode.from_dict(n) for n in data["nodes"]],
            edges=[LineageEdge.from_dict(e) for e in data["edges"]],
        )

    def versions_with_digest(self, digest: str) -> list[VersionInfo]:
        if not isinstance(digest, str):
            raise InvalidInputError(
                f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
            )
        items = self._list("/versions", {"digest": digest})
        return [VersionInfo.from_dict(v) for v in items]

    def all_root_digests(self) -> list[str]:
        return [str(d) for d in self._list("/root-digests", {})]

    # --- registries, collections and links ----------------------------------------------------
    def create_registry(
        self,
        name: str,
        *,
        description: str = "",
        protected_aliases: Sequence[str] = (),
        user: str | None = None,
    ) -> RegistryInfo:
        body = {
            "name": name,
            "description": description,
            "protected_aliases": _listish(protected_aliases),
        }
        return RegistryInfo.from_dict(self.http.json("POST", "/registries", json=body))

    def get_registry(self, name: str) -> RegistryInfo:
        return RegistryInfo.from_dict(self._get(f"/registries/{_seg(name)}"))

    def is_registry(self, name: str) -> bool:
        if not isinstance(name, str) or not name:
            return False
        return bool(self._get("/registries-exist", name=name)["exists"])

    def list_registries(self) -> list[RegistryInfo]:
        return [RegistryInfo.from_dict(r) for r in self._list("/registries", {})]

    def update_registry(
        self,
        name: str,
        *,
        description: str | None = None,
        protected_aliases: Sequence[str] | None = None,
        user: str | None = None,
    ) -> RegistryInfo:
        body = {"description": description, "protected_aliases": _listish(protected_aliases)}
        data = self.http.json("PATCH", f"/registries/{_seg(name)}", json=body)
        return RegistryInfo.from_dict(data)

    def registry_members(self, name: str) -> dict[str, str]:
        data = self._get(f"/registries/{_seg(name)}/members")
        return {str(k): str(v) for k, v in data["members"].items()}

    def set_registry_member(
        self, name: str, member: str, role: str | None, *, user: str | None = None
    ) -> None:
        path = f"/registries/{_seg(name)}/members/{_seg(member)}"
        self.http.json("PUT", path, json={"role": role})

    def _coll(self, registry: str, collection: str) -> str:
        return f"/registries/{_seg(registry)}/collections/{_seg(collection)}"

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
        check_int("version id", version_id)
        body = {"version_id": version_id, "aliases": _listish(aliases), "run_id": run_id}
        data = self.http.json("POST", self._coll(registry, collection) + "/links", json=body)
        return LinkInfo.from_dict(data)

    def unlink_version(
        self,
        registry: str,
        collection: str,
        ref: str,
        *,
        run_id: str | None = None,
        user: str | None = None,
        allow_protected: bool = True,
    ) -> LinkInfo:
        path = self._coll(registry, collection) + f"/versions/{_seg(ref)}"
        return LinkInfo.from_dict(self.http.json("DELETE", path))

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
    ) -> LinkInfo:
        path = self._coll(registry, collection) + f"/versions/{_seg(ref)}/aliases"
        body = {"add": _listish(add), "remove": _listish(remove), "run_id": run_id}
        return LinkInfo.from_dict(self.http.json("POST", path, json=body))

    def resolve_link(
        self, registry: str, collection: str, ref: str = "latest", *, at: datetime | None = None
    ) -> LinkInfo:
        if not isinstance(ref, str) or not ref:
            raise InvalidNameError(f"invalid version reference {ref!r}")
        params = {} if at is None else {"at": _when(at)}
        path = self._coll(registry, collection) + f"/versions/{_seg(ref)}"
        return LinkInfo.from_dict(self._get(path, **params))

    def list_collections(
        self, registry: str, *, limit: int = 100, offset: int = 0
    ) -> list[CollectionInfo]:
        items = self._list(f"/registries/{_seg(registry)}/collections", {}, limit, offset)
        return [CollectionInfo.from_dict(c) for c in items]

    def get_collection(self, registry: str, collection: str) -> CollectionInfo:
        return CollectionInfo.from_dict(self._get(self._coll(registry, collection)))

    def list_links(
        self, registry: str, collection: str, *, limit: int = 100, offset: int = 0
    ) -> list[LinkInfo]:
        items = self._list(self._coll(registry, collection) + "/versions", {}, limit, offset)
        return [LinkInfo.from_dict(x) for x in items]

    def update_collection(
        self,
        registry: str,
        collection: str,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> CollectionInfo:
        body = {"description": description, "tags": _listish(tags)}
        data = self.http.json("PATCH", self._coll(registry, collection), json=body)
        return CollectionInfo.from_dict(data)

    def collection_history(self, registry: str, collection: str) -> list[CollectionHistoryEntry]:
        items = self._list(self._coll(registry, collection) + "/history", {})
        return [CollectionHistoryEntry.from_dict(h) for h in items]

    def links_of(self, version_id: int) -> list[LinkInfo]:
        items = self._list(f"/versions/{_version_seg(version_id)}/links", {})
        return [LinkInfo.from_dict(x) for x in items]

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
        params = _search_params(filters, order)
        if project is not None:
            params["project"] = check_project(project)
        if name is not None:
            params["name"] = check_artifact_name(name)
        items = self._list("/search", params, limit, offset)
        return [VersionInfo.from_dict(v) for v in items]

    def search_links(
        self,
        registry: str,
        *,
        collection: str | None = None,
        filters: dict[str, Any] | None = None,
        order: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LinkInfo]:
        params = _search_params(filters, order)
        if collection is not None:
            params["collection"] = check_artifact_name(collection)
        items = self._list(f"/registries/{_seg(registry)}/search", params, limit, offset)
        return [LinkInfo.from_dict(x) for x in items]

    def resolve_at(self, project: str, name: str, ref: str, at: datetime) -> VersionInfo:
        check_project(project)
        check_artifact_name(name)
        if not isinstance(ref, str) or not ref:
            raise InvalidNameError(f"invalid version reference {ref!r}")
        path = f"/projects/{project}/artifacts/{name}/versions/{_seg(ref)}"
        return VersionInfo.from_dict(self._get(path, at=_when(at)))

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
    ) -> list[AuditRecord]:
        params: dict[str, Any] = {
            k: v
            for k, v in {
                "user": user,
                "project": project,
                "registry": registry,
                "action": action,
                "since": _when(since) if since is not None else None,
                "until": _when(until) if until is not None else None,
            }.items()
            if v is not None
        }
        return [AuditRecord.from_dict(e) for e in self._list("/audit", params, limit, offset)]


def _when(at: object) -> str:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidInputError(
            f"'at' is a timezone-aware date and time (e.g. 2026-11-30T12:00Z), not {at!r}"
        )
    return at.isoformat()


def _search_params(
    filters: dict[str, Any] | None, order: str | Sequence[str] | None
) -> dict[str, Any]:
    """Checked here with the server's own parser, so a bad filter fails the same way."""
    parse_filters(filters)
    parse_order(order)
    params: dict[str, Any] = {}
    if filters:
        params["filters"] = json.dumps(filters, default=_iso)
    if order:
        params["order"] = order if isinstance(order, str) else ",".join(order)
    return params


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise InvalidInputError(f"filters hold JSON values and datetimes, not {value!r}")


def _conforms(registry: RemoteRegistry) -> Registry:
    return registry  # mypy checks that RemoteRegistry implements the Registry protocol


__all__ = ["RemoteRegistry"]
