"""Retention through a server: the same methods as `cairn.service.retention.SqlRetention`
(which the embedded mode uses on its own database)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cairn.client.http import Http
from cairn.core.names import check_project
from cairn.service.retention import Policy, RetentionReport, Target, TtlInfo, check_ttl
from cairn.service.validate import check_int


def _seg(value: str) -> str:
    return quote(value, safe="")


class RemoteRetention:
    def __init__(self, http: Http) -> None:
        self.http = http

    def set_ttl(self, version_id: int, ttl: int | None, *, user: str | None = None) -> TtlInfo:
        check_int("version id", version_id)
        if ttl is not None:
            check_ttl(ttl)
        data = self.http.json("PUT", f"/versions/{version_id}/ttl", json={"ttl_seconds": ttl})
        return TtlInfo.from_dict(data)

    def ttl(self, version_id: int) -> TtlInfo:
        check_int("version id", version_id)
        return TtlInfo.from_dict(self.http.json("GET", f"/versions/{version_id}/ttl"))

    def set_policy(
        self, target: Target, changes: dict[str, Any], *, user: str | None = None
    ) -> Policy:
        target = target.check()
        if target.kind == "collection":
            assert target.registry is not None and target.collection is not None
            path = (
                f"/registries/{_seg(target.registry)}/collections/{_seg(target.collection)}"
                "/retention"
            )
        elif target.kind == "artifact":
            assert target.project is not None and target.artifact is not None
            path = f"/projects/{_seg(target.project)}/artifacts/{_seg(target.artifact)}/retention"
        else:
            assert target.project is not None
            path = f"/projects/{_seg(target.project)}/retention"
        return Policy.from_dict(self.http.json("PUT", path, json=changes))

    def policies(self, *, project: str | None = None, registry: str | None = None) -> list[Policy]:
        if project is not None:
            check_project(project)
            path = f"/projects/{_seg(project)}/retention"
        elif registry is not None:
            path = f"/registries/{_seg(registry)}/retention"
        else:
            from cairn.errors import InvalidInputError

            raise InvalidInputError("through a server, list the policies of a project or registry")
        return [Policy.from_dict(p) for p in self.http.json("GET", path)["items"]]

    def apply(
        self, *, project: str | None = None, dry_run: bool = False, user: str | None = None
    ) -> RetentionReport:
        body = {"project": project, "dry_run": dry_run}
        return RetentionReport.from_dict(self.http.json("POST", "/retention/apply", json=body))


__all__ = ["RemoteRetention"]
