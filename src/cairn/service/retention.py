"""Retention: a time to live (TTL) per version, and policies that say which versions to keep.

What is evaluated (`SqlRetention.apply`, ``cairn retention apply``, a server's schedule):

1. **Links.** A registry collection with a TTL unlinks its versions linked longer ago than that,
   unless the link holds an alias of the collection (recorded in the collection's history).
2. **Versions**, per artifact, in one transaction with the artifact locked (so a version logged
   meanwhile is either seen, and is the newest, or made after):

   - *protected*, always kept: a version holding an alias (``latest`` is not stored, so it
     protects nothing), linked into a registry collection, or used by a run (an input edge)
     within ``keep_used_days`` days;
   - *expired*: its TTL (its own, else its artifact's default, else its project's) has passed
     since it was created: deleted with reason ``expired``;
   - *policy*: with ``keep_last`` and/or ``keep_best`` set, a version kept by neither (not one of
     the newest N, not one of the best N by a metadata key) is deleted with reason ``policy``.

   A deletion is the usual soft delete (state ``deleted``, its number never reused), preceded by
   a history entry that says why (field ``expired`` or ``retention``); its bytes are freed by
   ``cairn gc`` once no live version refers to them.
3. **Bytes**, when the caller can read the objects (``measure``): what the deleted versions
   referred to, and how much of that no live version refers to any more — only that is freed by
   gc: objects shared with kept versions (deduplication) stay.

An artifact's unset policy fields take its project's. A collection's policy has a TTL only.
TTLs are stored in seconds: ``None`` inherits, ``0`` never expires.

The evaluation is `cairn.service.sql.retention`. Only one runs at a time on PostgreSQL (a
session advisory lock); on SQLite the database's write lock serialises each artifact's
evaluation, and one process should schedule it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from cairn.core.names import check_artifact_name, check_project
from cairn.errors import InvalidInputError
from cairn.service.validate import check_int

POLICY_FIELDS = (
    "ttl_seconds",
    "keep_last",
    "keep_best",
    "best_key",
    "best_order",
    "keep_used_days",
)
ScopeKind = Literal["project", "artifact", "collection"]
#: (roots of the deleted versions, roots of every live version, other live objects) ->
#: (distinct bytes the deleted versions refer to, of those the bytes nothing live refers to)
Measure = Callable[[list[str], list[str], list[str]], tuple[int, int]]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*", re.IGNORECASE)
_NEVER = ("none", "never", "off")
_KEY_PART = re.compile(r"[^\x00-\x1f\x7f\"\\.$]{1,128}")
MAX_TTL_SECONDS = 100 * 365 * 86400


# --- durations --------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Seconds of ``30d``, ``12h``, ``90m``, ``2w``, ``45s`` (or ``1d12h``); 0 for ``none`` /
    ``never`` (no TTL). InvalidInputError names the forms accepted."""
    if not isinstance(text, str):
        raise InvalidInputError(f"a duration is text like '30d', not {text!r}")
    raw = text.strip().lower()
    if raw in _NEVER:
        return 0
    total, pos = 0, 0
    while pos < len(raw):
        m = _DURATION.match(raw, pos)
        if m is None:
            break
        total += int(m[1]) * _UNITS[m[2].lower()]
        pos = m.end()
    if not raw or pos != len(raw) or total <= 0:
        raise InvalidInputError(
            f"bad duration {text!r}: use a positive number and a unit, e.g. 30d, 12h, 90m, 2w, "
            "45s (or 1d12h), or 'none'"
        )
    return check_ttl(total)


def format_duration(seconds: int | None) -> str:
    """``30d``, ``1d12h``, ``none`` (0 or None)."""
    if not seconds:
        return "none"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def check_ttl(seconds: object) -> int:
    """A TTL in seconds: 0 (never) or 1 s .. 100 years."""
    value = check_int("ttl_seconds", seconds)
    if value > MAX_TTL_SECONDS:
        raise InvalidInputError(f"ttl_seconds must be at most {MAX_TTL_SECONDS} (100 years)")
    return value


def ttl_seconds(ttl: timedelta | int | None) -> int:
    """A TTL given as a timedelta (or seconds) → seconds; None → 0 (never)."""
    if ttl is None:
        return 0
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
        if seconds <= 0 or seconds != int(seconds):
            raise InvalidInputError(
                f"a TTL is a positive whole number of seconds, not {ttl!r} (None: never expires)"
            )
        return check_ttl(int(seconds))
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
        return check_ttl(ttl)
    raise InvalidInputError(
        f"a TTL is a timedelta, e.g. timedelta(days=30), or None (never), not {ttl!r}"
    )


def check_key(key: object) -> str:
    """A metadata key to rank by: ``val_loss`` or a dotted path ``eval.loss``."""
    if not isinstance(key, str) or not all(_KEY_PART.fullmatch(p) for p in key.split(".")):
        raise InvalidInputError(
            f"invalid metadata key {key!r}: a key, or keys joined by '.', without quotes, '$' "
            "or control characters"
        )
    return key


# --- records ----------------------------------------------------------------------------------


@dataclass
class TtlInfo:
    """A version's TTL: ``own`` (None: inherits, 0: never), the one in force and where it
    comes from (``version``, ``artifact``, ``project``, or ``none``), and when it expires."""

    version_id: int
    own: int | None
    ttl: int | None
    source: str
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TtlInfo:
        at = data.get("expires_at")
        return cls(
            version_id=int(data["version_id"]),
            own=data.get("own"),
            ttl=data.get("ttl"),
            source=str(data["source"]),
            expires_at=datetime.fromisoformat(at) if at else None,
        )


@dataclass
class Target:
    """Where a policy applies: a project, an artifact of a project, or a registry collection."""

    project: str | None = None
    artifact: str | None = None
    registry: str | None = None
    collection: str | None = None

    @property
    def kind(self) -> ScopeKind:
        if self.registry is not None:
            return "collection"
        return "artifact" if self.artifact is not None else "project"

    def check(self) -> Target:
        if self.registry is not None or self.collection is not None:
            if self.project is not None or self.artifact is not None:
                raise InvalidInputError(
                    "a policy is for a project, an artifact, or a registry collection (one)"
                )
            if self.registry is None or self.collection is None:
                raise InvalidInputError("a collection's policy needs its registry and collection")
            check_project(self.registry)  # registry names follow the project name rules
            check_artifact_name(self.collection)
            return self
        if self.project is None:
            raise InvalidInputError("a policy is for a project, an artifact or a collection")
        check_project(self.project)
        if self.artifact is not None:
            check_artifact_name(self.artifact)
        return self

    def label(self) -> str:
        if self.kind == "collection":
            return f"{self.registry}/{self.collection}"
        return f"{self.project}/{self.artifact}" if self.artifact else f"{self.project}"


@dataclass
class Policy:
    kind: ScopeKind
    target: Target
    ttl_seconds: int | None = None
    keep_last: int | None = None
    keep_best: int | None = None
    best_key: str | None = None
    best_order: str | None = None
    keep_used_days: int | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    def rules(self) -> list[str]:
        """The rules in words: ``ttl 30d``, ``keep last 5``, ``keep best 3 by val_loss asc``."""
        out = []
        if self.ttl_seconds is not None:
            out.append(f"ttl {format_duration(self.ttl_seconds)}")
        if self.keep_last is not None:
            out.append(f"keep last {self.keep_last}")
        if self.keep_best is not None:
            out.append(f"keep best {self.keep_best} by {self.best_key} {self.best_order or 'asc'}")
        elif self.best_key is not None:
            out.append(f"rank by {self.best_key} {self.best_order or 'asc'}")
        if self.keep_used_days is not None:
            out.append(f"keep used within {self.keep_used_days}d")
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, **asdict(self.target)}
        for name in POLICY_FIELDS:
            data[name] = getattr(self, name)
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        data["updated_by"] = self.updated_by
        data["rules"] = self.rules()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        at = data.get("updated_at")
        return cls(
            kind=data["kind"],
            target=Target(
                data.get("project"),
                data.get("artifact"),
                data.get("registry"),
                data.get("collection"),
            ),
            updated_at=datetime.fromisoformat(at) if at else None,
            updated_by=data.get("updated_by"),
            **{name: data.get(name) for name in POLICY_FIELDS},
        )


@dataclass
class Removed:
    """A version retention deleted (or would delete): ``reason`` ``expired`` or ``policy``,
    ``rule`` in words (``ttl 30d (artifact)``, ``keep last 5``)."""

    project: str
    artifact: str
    version: int
    version_id: int
    digest: str
    size: int
    created_at: datetime
    reason: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Removed:
        return cls(**{**data, "created_at": datetime.fromisoformat(data["created_at"])})


@dataclass
class Spared:
    """A version a rule would delete, kept because it is protected (``because``)."""

    project: str
    artifact: str
    version: int
    version_id: int
    rule: str
    because: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Unlinked:
    """A collection link whose TTL passed, unlinked (or that would be)."""

    registry: str
    collection: str
    number: int
    version_id: int
    source: str  # project/artifact:vN
    linked_at: datetime
    ttl_seconds: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["linked_at"] = self.linked_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unlinked:
        return cls(**{**data, "linked_at": datetime.fromisoformat(data["linked_at"])})


@dataclass
class RetentionReport:
    """What one evaluation did (or, with ``dry_run``, would do).

    Bytes: ``logical_bytes`` is the sum of the deleted versions' sizes; ``referenced_bytes`` the
    distinct stored bytes they refer to; ``exclusive_bytes`` the part of those no live version
    (nor a run's saved diff) refers to any more: what gc frees. Objects shared with kept
    versions are not freed. ``freed_after_gc``: what a gc run right after freed (packs written
    within its grace period are left for a later gc). None: not measured."""

    dry_run: bool
    at: datetime
    removed: list[Removed] = field(default_factory=list)
    spared: list[Spared] = field(default_factory=list)
    unlinked: list[Unlinked] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logical_bytes: int = 0
    referenced_bytes: int | None = None
    exclusive_bytes: int | None = None
    freed_after_gc: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "at": self.at.isoformat(),
            "removed": [r.to_dict() for r in self.removed],
            "spared": [s.to_dict() for s in self.spared],
            "unlinked": [u.to_dict() for u in self.unlinked],
            "notes": list(self.notes),
            "logical_bytes": self.logical_bytes,
            "referenced_bytes": self.referenced_bytes,
            "exclusive_bytes": self.exclusive_bytes,
            "shared_bytes": (
                None
                if self.referenced_bytes is None or self.exclusive_bytes is None
                else self.referenced_bytes - self.exclusive_bytes
            ),
            "freed_after_gc": self.freed_after_gc,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetentionReport:
        return cls(
            dry_run=bool(data["dry_run"]),
            at=datetime.fromisoformat(data["at"]),
            removed=[Removed.from_dict(r) for r in data.get("removed", [])],
            spared=[Spared(**s) for s in data.get("spared", [])],
            unlinked=[Unlinked.from_dict(u) for u in data.get("unlinked", [])],
            notes=list(data.get("notes", [])),
            logical_bytes=int(data.get("logical_bytes", 0)),
            referenced_bytes=data.get("referenced_bytes"),
            exclusive_bytes=data.get("exclusive_bytes"),
            freed_after_gc=data.get("freed_after_gc"),
            seconds=float(data.get("seconds", 0.0)),
        )


class Retention(Protocol):
    """What the SDK and CLI call: `SqlRetention` (embedded, and the server) or the client's
    `RemoteRetention` (through a server)."""

    def set_ttl(self, version_id: int, ttl: int | None, *, user: str | None = None) -> TtlInfo:
        """``ttl``: seconds, 0 = never, None = inherit the artifact's or project's default."""
        ...

    def ttl(self, version_id: int) -> TtlInfo: ...

    def set_policy(
        self, target: Target, changes: dict[str, Any], *, user: str | None = None
    ) -> Policy:
        """Set the fields given (None unsets one); the others stay."""
        ...

    def policies(self, *, project: str | None = None, registry: str | None = None) -> list[Policy]:
        """A project's policies (its own and its artifacts'), a registry's, or all."""
        ...

    def apply(
        self, *, project: str | None = None, dry_run: bool = False, user: str | None = None
    ) -> RetentionReport: ...


def changes_of(
    *,
    ttl: str | None = None,
    keep_last: int | None = None,
    keep_best: int | None = None,
    by: str | None = None,
    keep_used_days: int | None = None,
    unset: Sequence[str] = (),
) -> dict[str, Any]:
    """Policy changes from CLI-style options: ``ttl`` a duration (``none``: never), ``by`` a
    metadata key, ``-key`` for descending; ``unset`` names fields to clear (``ttl``,
    ``keep-last``, ``keep-best``, ``keep-used``)."""
    out: dict[str, Any] = {}
    if ttl is not None:
        out["ttl_seconds"] = parse_duration(ttl)
    if keep_last is not None:
        out["keep_last"] = keep_last
    if keep_best is not None:
        out["keep_best"] = keep_best
    if by is not None:
        desc = by.startswith("-")
        out["best_key"] = check_key(by[1:] if desc else by)
        out["best_order"] = "desc" if desc else "asc"
    if keep_used_days is not None:
        out["keep_used_days"] = keep_used_days
    names = {
        "ttl": ["ttl_seconds"],
        "keep-last": ["keep_last"],
        "keep-best": ["keep_best", "best_key", "best_order"],
        "keep-used": ["keep_used_days"],
    }
    for name in unset:
        if name not in names:
            raise InvalidInputError(f"--unset takes {', '.join(names)}, not {name!r}")
        for f in names[name]:
            out[f] = None
    return out


__all__ = [
    "POLICY_FIELDS",
    "Measure",
    "Policy",
    "Removed",
    "Retention",
    "RetentionReport",
    "Spared",
    "Target",
    "TtlInfo",
    "Unlinked",
    "changes_of",
    "check_key",
    "format_duration",
    "parse_duration",
    "ttl_seconds",
]
