"""Plain value types that cross every boundary (service, SDK, server, CLI).

They carry no behaviour beyond ``to_dict``/``from_dict`` so the server can send them as JSON.
Timestamps are timezone-aware UTC datetimes; JSON fields are plain dicts/lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

RunState = Literal["running", "finished", "failed", "crashed"]
T = TypeVar("T")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


class Record:
    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _encode(self)
        return result

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            if isinstance(value, str) and f.type in ("datetime", "datetime | None"):
                value = datetime.fromisoformat(value)
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass
class ProjectInfo(Record):
    name: str
    created_at: datetime
    artifact_count: int = 0
    run_count: int = 0


@dataclass
class RunInfo(Record):
    id: str
    project: str
    name: str
    job_type: str | None
    state: RunState
    started_at: datetime
    finished_at: datetime | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    host: str = ""
    python_version: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    git_diff_digest: str | None = None
    user: str | None = None
    heartbeat_at: datetime | None = None
    failure: str | None = None  # why a failed/crashed run ended, e.g. "ValueError: bad shape"


@dataclass
class MetricRow(Record):
    step: int
    data: dict[str, Any]
    at: datetime


@dataclass
class ArtifactInfo(Record):
    project: str
    name: str
    type: str
    created_at: datetime
    updated_at: datetime
    version_count: int = 0
    latest_version: int | None = None
    latest_size: int | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)  # the artifact's own tags


@dataclass
class VersionInfo(Record):
    id: int
    project: str
    name: str
    type: str
    version: int  # the N of vN
    digest: str  # artifact digest (paths + contents + references); equals the root tree digest
    size: int
    file_count: int
    description: str
    metadata: dict[str, Any]
    aliases: list[str]  # user aliases plus "latest" when this is the newest version
    tags: list[str]
    created_at: datetime
    run_id: str | None  # the run that logged (created) it
    state: Literal["committed", "deleted"] = "committed"

    @property
    def label(self) -> str:
        return f"v{self.version}"

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}:v{self.version}"


@dataclass
class HistoryEntry(Record):
    version_id: int
    field: str  # "description" | "metadata" | "aliases" | "tags" | "created" | "deleted"
    old: Any
    new: Any
    at: datetime
    run_id: str | None = None
    user: str | None = None


@dataclass
class LineageNode(Record):
    id: str  # "run:<run id>" or "version:<version id>"
    kind: Literal["run", "version"]
    label: str  # run name / "name:vN"
    project: str
    type: str | None = None  # artifact type or run job type
    depth: int = 0  # signed distance from the start node: negative upstream, positive downstream


@dataclass
class LineageEdge(Record):
    source: str  # node ids; data flows source -> target
    target: str


@dataclass
class LineageGraph(Record):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]

    def _repr_html_(self) -> str:
        """Jupyter shows the dashboard's lineage picture."""
        from cairn.core.lineage import graph_html

        return graph_html(self)


@dataclass
class RegistryInfo(Record):
    """A registry above projects (``models``): collections of linked versions."""

    name: str
    description: str
    protected_aliases: list[str]  # only maintainers and admins may set, move or remove these
    created_at: datetime
    created_by: str | None = None
    collection_count: int = 0


@dataclass
class CollectionInfo(Record):
    registry: str
    name: str
    type: str
    description: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    version_count: int = 0  # versions linked now
    latest_version: int | None = None

    @property
    def path(self) -> str:
        return f"{self.registry}/{self.name}"


@dataclass
class LinkInfo(Record):
    """Version ``version`` of a collection: a link to ``target``, a version of an artifact."""

    registry: str
    collection: str
    version: int  # the N of the collection's own vN (link order)
    aliases: list[str]  # the collection's aliases on it, plus "latest" on the newest link
    linked_at: datetime
    target: VersionInfo
    user: str | None = None
    run_id: str | None = None
    unlinked_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"v{self.version}"

    @property
    def qualified_name(self) -> str:
        return f"{self.registry}/{self.collection}:v{self.version}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkInfo:
        fields = dict(data)
        fields["target"] = VersionInfo.from_dict(fields["target"])
        for key in ("linked_at", "unlinked_at"):
            if isinstance(fields.get(key), str):
                fields[key] = datetime.fromisoformat(fields[key])
        return cls(**fields)


@dataclass
class CollectionHistoryEntry(Record):
    """One change to a collection: "created", "linked", "unlinked", "alias" (``alias`` moved to
    collection version ``version``; None when removed), "description", "tags"."""

    field: str
    at: datetime
    version: int | None = None
    alias: str | None = None
    old: Any = None
    new: Any = None
    user: str | None = None
    run_id: str | None = None


@dataclass
class AuditRecord(Record):
    """One audit log entry: who changed what, when, from where (before/after)."""

    id: int
    at: datetime
    action: str
    target: str
    user: str | None = None
    address: str | None = None
    project: str | None = None
    registry: str | None = None
    before: Any = None
    after: Any = None
