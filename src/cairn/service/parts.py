"""Distributed versions: parts that many workers upsert, committed as one version at finish.

A worker stores its files (the bytes go straight to the object store) and the tree of its part,
then records the part: ``(project, artifact, distributed id, part id) -> root, size, files``.
Upserting the same part again replaces its row (a retried task is idempotent). The finisher
lists the parts, merges their trees into one (in the SDK, `cairn.objects.treemerge`: no file
bytes move), and `Parts.finish` commits the version and removes exactly the parts it merged,
in one transaction (a part upserted meanwhile makes the finish refuse, so nothing is lost).

While pending, a part's objects are live for `cairn gc` (`cairn.service.liveness`); a part not
touched for longer than gc's grace period is abandoned and removed by gc, like a direct upload
never committed.

`SqlParts` (`cairn.service.sql.parts`) implements this for the embedded mode and the server,
`RemoteParts` (`cairn.client.parts`) over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cairn.core.records import Record, VersionInfo
from cairn.errors import InvalidNameError

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")


def check_part_name(kind: str, value: object) -> str:
    """A distributed id or a part id: 1-128 letters, digits and ``. _ : @ + = -``, starting with
    a letter or digit (it goes into URLs and file names as is)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidNameError(
            f"invalid {kind} {value!r}: use 1-128 letters, digits and . _ : @ + = - "
            "(starting with a letter or digit)"
        )
    return value


@dataclass
class PartInfo(Record):
    """One part of a distributed version that has not been finished yet."""

    project: str
    name: str  # the artifact
    type: str
    distributed_id: str
    part: str
    root: str  # the digest of the part's own tree (its files, at their paths in the version)
    size: int
    file_count: int
    run_id: str | None
    user: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PartRef:
    """A part as the finisher merged it: finish refuses when its row changed meanwhile."""

    part: str
    root: str

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "root": self.root}


class Parts(Protocol):
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
        """Record (or replace) one part. InvalidNameError when the artifact exists with another
        type, or when other parts of the same distributed id have another type."""
        ...

    def list(self, project: str, name: str, *, distributed_id: str) -> list[PartInfo]:
        """The pending parts of a distributed version, by part id."""
        ...

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
        """Commit the version (as `Registry.commit_version`) and remove ``parts``, in one
        transaction. ConflictError, and nothing changed, when the pending parts are not exactly
        ``parts`` (one arrived, was replaced or was removed since they were listed)."""
        ...

    def discard(self, project: str, name: str, *, distributed_id: str) -> int:
        """Remove every pending part of a distributed version; returns how many."""
        ...


__all__ = ["PartInfo", "PartRef", "Parts", "check_part_name"]
