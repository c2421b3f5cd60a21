"""Parts of distributed versions through a server: the same methods as
`cairn.service.sql.parts.SqlParts` (which the embedded mode uses on its own database)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cairn.client.http import Http
from cairn.core.names import check_artifact_name, check_project
from cairn.core.records import VersionInfo
from cairn.service.parts import PartInfo, PartRef, check_part_name
from cairn.service.validate import json_dict


def _base(project: str, name: str, distributed_id: str) -> str:
    check_project(project)
    check_artifact_name(name)
    check_part_name("distributed id", distributed_id)
    return f"/projects/{project}/artifacts/{name}/parts/{distributed_id}"


class RemoteParts:
    def __init__(self, http: Http) -> None:
        self.http = http

    def upsert(
        self,
        project: str,
        name: str,
        type: str,
        *,
        distributed_id: str,
        part: str,
        root: str,
        size: int,
        file_count: int,
        run_id: str | None = None,
        user: str | None = None,
    ) -> PartInfo:
        check_part_name("part id", part)
        body = {
            "type": type,
            "root": root,
            "size": size,
            "file_count": file_count,
            "run_id": run_id,
            "user": user,
        }
        # the same part sent again replaces it with the same content: safe to retry
        path = f"{_base(project, name, distributed_id)}/{part}"
        return PartInfo.from_dict(self.http.json("PUT", path, json=body, retry=True))

    def list(self, project: str, name: str, *, distributed_id: str) -> list[PartInfo]:
        data = self.http.json("GET", _base(project, name, distributed_id))
        return [PartInfo.from_dict(p) for p in data["items"]]

    def finish(
        self,
        project: str,
        name: str,
        type: str,
        *,
        distributed_id: str,
        parts: Sequence[PartRef],
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
        body = {
            "type": type,
            "parts": [p.to_dict() for p in parts],
            "digest": digest,
            "size": size,
            "file_count": file_count,
            "description": description,
            "metadata": None if metadata is None else json_dict("metadata", metadata),
            "aliases": list(aliases),
            "tags": list(tags),
            "run_id": run_id,
            "user": user,
        }
        data = self.http.json("POST", f"{_base(project, name, distributed_id)}/finish", json=body)
        return VersionInfo.from_dict(data["version"]), bool(data["created"])

    def discard(self, project: str, name: str, *, distributed_id: str) -> int:
        data = self.http.json("DELETE", _base(project, name, distributed_id))
        return int(data["removed"])


__all__ = ["RemoteParts"]
