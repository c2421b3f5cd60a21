"""Retention on the metadata database: `SqlRetention` (the embedded mode and the server) and
the server's `RetentionScheduler`. What is evaluated, and in what order, is described in
`cairn.service.retention`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.names import check_project
from cairn.errors import (
    ArtifactNotFoundError,
    CairnError,
    ConflictError,
    InvalidInputError,
    StateError,
)
from cairn.metadata.engine import is_sqlite, lock_artifact, transaction
from cairn.metadata.tables import (
    Alias,
    Artifact,
    Collection,
    CollectionAlias,
    CollectionHistory,
    CollectionLink,
    Project,
    RegistryRow,
    RetentionPolicy,
    Run,
    RunArtifact,
    Version,
)
from cairn.service.audit import Actor, acting
from cairn.service.retention import (
    POLICY_FIELDS,
    Measure,
    Policy,
    Removed,
    Retention,
    RetentionReport,
    ScopeKind,
    Spared,
    Target,
    TtlInfo,
    Unlinked,
    check_key,
    check_ttl,
    format_duration,
)
from cairn.service.sql.artifacts import find_artifact, find_version, version_label
from cairn.service.sql.audit import record
from cairn.service.sql.common import COMMITTED, DELETED, INPUT, chunks, utcnow
from cairn.service.sql.history import add_history
from cairn.service.sql.projects import find_project
from cairn.service.sql.registries import check_registry_name, find_registry
from cairn.service.validate import check_int, check_str

log = logging.getLogger("cairn.retention")

#: PostgreSQL advisory lock key held by the one running evaluation ("cairnret" in ASCII)
# the evaluator lock, one per schema: deployments sharing one PostgreSQL database in separate
# schemas do not wait for each other
_LOCK_KEY = "hashtext('cairn.retention.' || current_schema())"
#: who a server's scheduled evaluation acts as (":" is in no user name)
SCHEDULE_USER = "schedule:retention"


# --- evaluation, inside a transaction -------------------------------------------------------


def _metric(meta: Any, key: str) -> float | None:
    value = meta
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _Effective:
    ttl_seconds: int | None = None
    ttl_source: str = "none"
    keep_last: int | None = None
    keep_best: int | None = None
    best_key: str | None = None
    best_order: str = "asc"
    keep_used_days: int | None = None

    @property
    def has_keep_rules(self) -> bool:
        return self.keep_last is not None or self.keep_best is not None


def _effective(
    artifact_policy: RetentionPolicy | None, project_policy: RetentionPolicy | None
) -> _Effective:
    eff = _Effective()
    for source, row in (("project", project_policy), ("artifact", artifact_policy)):
        if row is None:
            continue
        if row.ttl_seconds is not None:
            eff.ttl_seconds, eff.ttl_source = row.ttl_seconds, source
        for name in ("keep_last", "keep_best", "best_key", "keep_used_days"):
            if getattr(row, name) is not None:
                setattr(eff, name, getattr(row, name))
        if row.best_order is not None:
            eff.best_order = row.best_order
    return eff


def _policy_row(s: Session, scope: str) -> RetentionPolicy | None:
    return s.scalars(sa.select(RetentionPolicy).where(RetentionPolicy.scope == scope)).one_or_none()


def _version_ttl(s: Session, version: Version) -> TtlInfo:
    art = s.get(Artifact, version.artifact_id)
    assert art is not None
    eff = _effective(
        _policy_row(s, f"artifact:{art.id}"), _policy_row(s, f"project:{art.project_id}")
    )
    ttl: int | None = version.ttl_seconds
    source = "version"
    if ttl is None:
        ttl, source = eff.ttl_seconds, eff.ttl_source
    if not ttl:
        return TtlInfo(version.id, version.ttl_seconds, None, source if ttl == 0 else "none", None)
    return TtlInfo(
        version.id, version.ttl_seconds, ttl, source, version.created_at + timedelta(seconds=ttl)
    )


def _protections(
    s: Session, version_ids: list[int], used_days: int | None, now: datetime, expiring: set[int]
) -> dict[int, str]:
    """version id -> why it is protected (the first reason found)."""
    why: dict[int, str] = {}
    for batch in chunks(version_ids):
        _protect_batch(s, batch, used_days, now, expiring, why)
    return why


def _protect_batch(
    s: Session,
    version_ids: list[int],
    used_days: int | None,
    now: datetime,
    expiring: set[int],
    why: dict[int, str],
) -> None:
    for vid, alias in s.execute(
        sa.select(Alias.version_id, Alias.alias)
        .where(Alias.version_id.in_(version_ids))
        .order_by(Alias.alias)
    ):
        why.setdefault(vid, f"alias {alias}")
    for link_id, vid, reg, coll, number in s.execute(
        sa.select(
            CollectionLink.id, CollectionLink.version_id, RegistryRow.name, Collection.name,
            CollectionLink.number,
        )
        .join(Collection, Collection.id == CollectionLink.collection_id)
        .join(RegistryRow, RegistryRow.id == Collection.registry_id)
        .where(CollectionLink.version_id.in_(version_ids), CollectionLink.unlinked_at.is_(None))
        .order_by(CollectionLink.id)
    ):  # fmt: skip
        if link_id not in expiring:
            why.setdefault(vid, f"linked in {reg}/{coll}:v{number}")
    if used_days is not None:
        since = now - timedelta(days=used_days)
        for vid, run_name in s.execute(
            sa.select(RunArtifact.version_id, Run.name)
            .join(Run, Run.id == RunArtifact.run_id)
            .where(
                RunArtifact.version_id.in_(version_ids),
                RunArtifact.direction == INPUT,
                RunArtifact.at >= since,
            )
            .order_by(RunArtifact.at.desc())
        ):
            why.setdefault(vid, f"used by run {run_name} within {used_days}d")


def _evaluate_artifact(
    s: Session,
    artifact: Artifact,
    project: str,
    now: datetime,
    expiring_links: set[int],
    report: RetentionReport,
    *,
    dry_run: bool,
    user: str | None,
) -> None:
    eff = _effective(
        _policy_row(s, f"artifact:{artifact.id}"), _policy_row(s, f"project:{artifact.project_id}")
    )
    live = list(
        s.scalars(
            sa.select(Version)
            .where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
            .order_by(Version.version.desc())
        )
    )
    if not live:
        return
    drop: dict[int, tuple[str, str]] = {}  # version id -> (reason, rule)
    for v in live:
        if v.ttl_seconds is not None:
            ttl, source = v.ttl_seconds, "version"
        else:
            ttl, source = eff.ttl_seconds or 0, eff.ttl_source
        if ttl and v.created_at + timedelta(seconds=ttl) <= now:
            drop[v.id] = ("expired", f"ttl {format_duration(ttl)} ({source})")
    if eff.has_keep_rules:
        kept: set[int] = set()
        rules = []
        if eff.keep_last is not None:
            kept.update(v.id for v in live[: eff.keep_last])
            rules.append(f"keep last {eff.keep_last}")
        if eff.keep_best is not None and eff.best_key is not None:
            ranked = [(m, v) for v in live if (m := _metric(v.meta, eff.best_key)) is not None]
            rules.append(f"keep best {eff.keep_best} by {eff.best_key} {eff.best_order}")
            if not ranked:
                report.notes.append(
                    f"{project}/{artifact.name}: no version has a number at metadata key "
                    f"{eff.best_key!r}; keep-best is not applied (nothing deleted by policy)"
                )
                kept.update(v.id for v in live)
            ranked.sort(
                key=lambda mv: (mv[0] if eff.best_order == "asc" else -mv[0], -mv[1].version)
            )
            kept.update(v.id for _, v in ranked[: eff.keep_best])
        elif eff.keep_best is not None:
            report.notes.append(
                f"{project}/{artifact.name}: keep-best has no metadata key; not applied"
            )
            kept.update(v.id for v in live)
        rule = ", ".join(rules)
        for v in live:
            if v.id not in kept and v.id not in drop:
                drop[v.id] = ("policy", f"not kept by: {rule}")
    if not drop:
        return
    protected = _protections(s, list(drop), eff.keep_used_days, now, expiring_links)
    for v in reversed(live):  # oldest first in the report
        if v.id not in drop:
            continue
        reason, rule = drop[v.id]
        if v.id in protected:
            report.spared.append(
                Spared(project, artifact.name, v.version, v.id, rule, protected[v.id])
            )
            continue
        report.removed.append(
            Removed(
                project, artifact.name, v.version, v.id, v.digest, v.size, v.created_at,
                reason, rule,
            )
        )  # fmt: skip
        report.logical_bytes += v.size
        if dry_run:
            continue
        note = {"reason": reason, "rule": rule}
        add_history(s, v.id, "expired" if reason == "expired" else "retention", None, note, now,
                    None, user)  # fmt: skip
        add_history(s, v.id, "deleted", COMMITTED, DELETED, now, None, user)
        v.state = DELETED
        artifact.updated_at = now


def _expiring_links(s: Session, now: datetime, project: str | None) -> list[tuple[Any, ...]]:
    """(link, registry, collection, ttl, source label) of every live link past its
    collection's TTL that holds no alias."""
    query = (
        sa.select(CollectionLink, RegistryRow.name, Collection.name, RetentionPolicy.ttl_seconds,
                  Project.name, Artifact.name, Version.version)
        .join(Collection, Collection.id == CollectionLink.collection_id)
        .join(RegistryRow, RegistryRow.id == Collection.registry_id)
        .join(RetentionPolicy, RetentionPolicy.collection_id == Collection.id)
        .join(Version, Version.id == CollectionLink.version_id)
        .join(Artifact, Artifact.id == Version.artifact_id)
        .join(Project, Project.id == Artifact.project_id)
        .where(
            CollectionLink.unlinked_at.is_(None),
            RetentionPolicy.ttl_seconds > 0,
            ~sa.exists().where(CollectionAlias.link_id == CollectionLink.id),
        )
        .order_by(CollectionLink.id)
    )  # fmt: skip
    if project is not None:
        query = query.where(Project.name == project)
    out = []
    for link, reg, coll, ttl, proj, art, number in s.execute(query):
        if ttl and link.linked_at + timedelta(seconds=ttl) <= now:
            out.append((link, reg, coll, ttl, f"{proj}/{art}:v{number}"))
    return out


# --- the service ------------------------------------------------------------------------------


class SqlRetention:
    """Retention on the metadata database (the embedded mode, and the server's service)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _read(self, work: Callable[[Session], Any]) -> Any:
        return transaction(self.engine, work, write=False)

    def _write(self, work: Callable[[Session], Any]) -> Any:
        return transaction(self.engine, work, write=True)

    # --- TTL of one version -------------------------------------------------------------------

    def set_ttl(self, version_id: int, ttl: int | None, *, user: str | None = None) -> TtlInfo:
        check_int("version id", version_id)
        if ttl is not None:
            check_ttl(ttl)
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> TtlInfo:
            version = find_version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state != COMMITTED:
                raise StateError(
                    f"{version_label(s, version)} is deleted: a TTL is for live versions"
                )
            if version.ttl_seconds != ttl:
                add_history(s, version.id, "ttl", version.ttl_seconds, ttl, utcnow(), None, user)
                version.ttl_seconds = ttl
            return _version_ttl(s, version)

        result: TtlInfo = self._write(work)
        return result

    def ttl(self, version_id: int) -> TtlInfo:
        def work(s: Session) -> TtlInfo:
            return _version_ttl(s, find_version(s, version_id))

        result: TtlInfo = self._read(work)
        return result

    # --- policies -----------------------------------------------------------------------------

    def _scope_row(self, s: Session, target: Target) -> tuple[str, dict[str, int]]:
        if target.kind == "collection":
            assert target.registry is not None
            reg = find_registry(s, target.registry)
            coll = s.scalars(
                sa.select(Collection).where(
                    Collection.registry_id == reg.id, Collection.name == target.collection
                )
            ).one_or_none()
            if coll is None:
                raise ArtifactNotFoundError(
                    f"registry {target.registry!r} has no collection {target.collection!r}: "
                    "link a version into it first"
                )
            return f"collection:{coll.id}", {"collection_id": coll.id}
        assert target.project is not None
        if target.artifact is not None:
            _, art = find_artifact(s, target.project, target.artifact)
            return f"artifact:{art.id}", {"artifact_id": art.id}
        proj = find_project(s, target.project)
        return f"project:{proj.id}", {"project_id": proj.id}

    @staticmethod
    def _check_changes(kind: ScopeKind, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise InvalidInputError("policy changes are a dict of fields")
        unknown = sorted(set(changes) - set(POLICY_FIELDS))
        if unknown:
            raise InvalidInputError(
                f"unknown policy field(s) {', '.join(unknown)}: use {', '.join(POLICY_FIELDS)}"
            )
        if kind == "collection":
            other = sorted(k for k, v in changes.items() if k != "ttl_seconds" and v is not None)
            if other:
                raise InvalidInputError(
                    f"a registry collection's policy has a TTL only (its links expire), not "
                    f"{', '.join(other)}: set keep rules on the artifacts"
                )
        out: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None:
                out[name] = None
            elif name == "ttl_seconds":
                out[name] = check_ttl(value)
            elif name in ("keep_last", "keep_best"):
                n = check_int(name, value, minimum=None)
                if n < 1:
                    raise InvalidInputError(
                        f"{name} must be at least 1, not {n} (to expire every version, set a TTL)"
                    )
                out[name] = n
            elif name == "keep_used_days":
                n = check_int(name, value, minimum=None)
                if n < 1:
                    raise InvalidInputError(f"keep_used_days must be at least 1, not {n}")
                out[name] = n
            elif name == "best_key":
                out[name] = check_key(value)
            elif name == "best_order":
                if value not in ("asc", "desc"):
                    raise InvalidInputError(f"best_order is 'asc' or 'desc', not {value!r}")
                out[name] = value
        return out

    def set_policy(
        self, target: Target, changes: dict[str, Any], *, user: str | None = None
    ) -> Policy:
        target = target.check()
        values = self._check_changes(target.kind, changes)
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> Policy:
            scope, ids = self._scope_row(s, target)
            row = _policy_row(s, scope)
            if row is None:
                row = RetentionPolicy(scope=scope, updated_at=utcnow(), **ids)
                s.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            if row.keep_best is not None and row.best_key is None and target.kind == "artifact":
                raise InvalidInputError(
                    "keep_best needs the metadata key to rank by (best_key, e.g. 'val_loss')"
                )
            if values.get("best_key") is not None:
                self._check_key_exists(s, target, ids, values["best_key"])
            row.updated_at = utcnow()
            row.updated_by = user
            s.flush()
            policy = self._policy(s, row)
            if all(getattr(row, name) is None for name in POLICY_FIELDS):
                s.delete(row)  # nothing set: no policy
            return policy

        result: Policy = self._write(work)
        return result

    @staticmethod
    def _check_key_exists(s: Session, target: Target, ids: dict[str, int], key: str) -> None:
        """The key must be a number in some live version's metadata (when there are any)."""
        query = sa.select(Version.meta).where(Version.state == COMMITTED)
        if "artifact_id" in ids:
            query = query.where(Version.artifact_id == ids["artifact_id"])
        else:
            query = query.join(Artifact, Artifact.id == Version.artifact_id).where(
                Artifact.project_id == ids["project_id"]
            )
        seen = 0
        keys: set[str] = set()
        for (meta,) in s.execute(query.order_by(Version.id.desc()).limit(10_000)):
            seen += 1
            if _metric(meta, key) is not None:
                return
            if isinstance(meta, dict):
                keys.update(k for k in meta if _metric(meta, k) is not None)
        if seen:
            there = f"; numeric keys there: {', '.join(sorted(keys)[:10])}" if keys else ""
            raise InvalidInputError(
                f"unknown metadata key {key!r}: no version of {target.label()} has a number "
                f"there{there}"
            )

    def _policy(self, s: Session, row: RetentionPolicy) -> Policy:
        kind, _, _ = row.scope.partition(":")
        target = Target()
        if row.collection_id is not None:
            reg, coll = s.execute(
                sa.select(RegistryRow.name, Collection.name)
                .join(Collection, Collection.registry_id == RegistryRow.id)
                .where(Collection.id == row.collection_id)
            ).one()
            target = Target(registry=reg, collection=coll)
        elif row.artifact_id is not None:
            proj, art = s.execute(
                sa.select(Project.name, Artifact.name)
                .join(Artifact, Artifact.project_id == Project.id)
                .where(Artifact.id == row.artifact_id)
            ).one()
            target = Target(project=proj, artifact=art)
        elif row.project_id is not None:
            target = Target(project=s.get(Project, row.project_id).name)  # type: ignore[union-attr]
        return Policy(
            kind=kind,  # type: ignore[arg-type]
            target=target,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            **{name: getattr(row, name) for name in POLICY_FIELDS},
        )

    def policies(self, *, project: str | None = None, registry: str | None = None) -> list[Policy]:
        if project is not None:
            check_project(project)
        if registry is not None:
            check_registry_name(registry)

        def work(s: Session) -> list[Policy]:
            query = sa.select(RetentionPolicy).order_by(RetentionPolicy.id)
            if project is not None:
                proj = find_project(s, project)
                arts = sa.select(Artifact.id).where(Artifact.project_id == proj.id)
                query = query.where(
                    sa.or_(
                        RetentionPolicy.project_id == proj.id,
                        RetentionPolicy.artifact_id.in_(arts),
                    )
                )
            elif registry is not None:
                reg = find_registry(s, registry)
                colls = sa.select(Collection.id).where(Collection.registry_id == reg.id)
                query = query.where(RetentionPolicy.collection_id.in_(colls))
            return [self._policy(s, row) for row in s.scalars(query)]

        result: list[Policy] = self._read(work)
        return result

    # --- evaluation ---------------------------------------------------------------------------

    @contextmanager
    def evaluator(self, *, wait: bool = False) -> Iterator[bool]:
        """Hold the one-evaluator lock (PostgreSQL: a session advisory lock) while the block
        runs; yields False when another process holds it (and ``wait`` is False). SQLite has
        no such lock: yields True (one process should schedule evaluations)."""
        if is_sqlite(self.engine):
            yield True
            return
        with self.engine.connect() as conn:
            if wait:
                conn.execute(sa.text(f"SELECT pg_advisory_lock({_LOCK_KEY})"))
                got = True
            else:
                got = bool(
                    conn.execute(sa.text(f"SELECT pg_try_advisory_lock({_LOCK_KEY})")).scalar()
                )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text(f"SELECT pg_advisory_unlock({_LOCK_KEY})"))
                    conn.commit()

    def apply(
        self,
        *,
        project: str | None = None,
        dry_run: bool = False,
        user: str | None = None,
        now: datetime | None = None,
        measure: Measure | None = None,
    ) -> RetentionReport:
        """Evaluate every policy and TTL (of one project, or all) and delete what they say, or
        only report it (``dry_run``). ConflictError when another evaluation is running (on
        PostgreSQL)."""
        if project is not None:
            check_project(project)
        if user is not None:
            check_str("user", user)
        if dry_run:
            return self._apply(project, True, user, now, measure)
        with self.evaluator() as got:
            if not got:
                raise ConflictError(
                    "another retention evaluation is running (a server's schedule or another "
                    "`cairn retention apply`); retry when it is done"
                )
            return self._apply(project, False, user, now, measure)

    def _apply(
        self,
        project: str | None,
        dry_run: bool,
        user: str | None,
        now: datetime | None,
        measure: Measure | None,
    ) -> RetentionReport:
        started = time.monotonic()
        at = now or utcnow()
        report = RetentionReport(dry_run=dry_run, at=at)
        if project is not None:
            self._read(lambda s: find_project(s, project))
        expiring = self._expire_links(project, at, dry_run, user, report)
        for artifact_id, project_name in self._candidates(project):
            self._evaluate(artifact_id, project_name, at, expiring, report, dry_run, user)
        if measure is not None and report.removed:
            dropped = sorted({r.digest for r in report.removed})
            gone = {r.version_id for r in report.removed}
            kept, leaves = self._live_roots(gone)
            try:
                report.referenced_bytes, report.exclusive_bytes = measure(dropped, kept, leaves)
            except CairnError as exc:  # a damaged store: what was done stays done, and said
                report.notes.append(f"bytes not measured: {exc} (run `cairn check` on the store)")
        elif measure is not None:
            report.referenced_bytes = report.exclusive_bytes = 0
        report.seconds = time.monotonic() - started
        return report

    def _expire_links(
        self, project: str | None, at: datetime, dry_run: bool, user: str | None,
        report: RetentionReport,
    ) -> set[int]:  # fmt: skip
        def work(s: Session) -> set[int]:
            ids: set[int] = set()
            for link, reg, coll, ttl, source in _expiring_links(s, at, project):
                if not dry_run:
                    if not is_sqlite(s):
                        s.execute(
                            sa.select(Collection.id)
                            .where(Collection.id == link.collection_id)
                            .with_for_update()
                        ).one()
                    s.refresh(link)
                    held = s.scalar(
                        sa.select(sa.func.count())
                        .select_from(CollectionAlias)
                        .where(CollectionAlias.link_id == link.id)
                    )
                    if link.unlinked_at is not None or held:
                        continue
                    link.unlinked_at = at
                    s.add(
                        CollectionHistory(
                            collection_id=link.collection_id, link_id=link.id, field="unlinked",
                            alias=None, old=f"v{link.number}",
                            new={"reason": "expired", "ttl": format_duration(ttl)},
                            at=at, run_id=None, user=user,
                        )
                    )  # fmt: skip
                    record(
                        s, "collection.unlink", f"{reg}/{coll}:v{link.number}",
                        {"version_id": link.version_id, "reason": "expired"}, None,
                        registry=reg, user=user,
                    )  # fmt: skip
                ids.add(link.id)
                report.unlinked.append(
                    Unlinked(reg, coll, link.number, link.version_id, source, link.linked_at, ttl)
                )
            return ids

        result: set[int] = (self._read if dry_run else self._write)(work)
        return result

    def _candidates(self, project: str | None) -> list[tuple[int, str]]:
        """(artifact id, project name) of every artifact some TTL or policy may touch."""

        def work(s: Session) -> list[tuple[int, str]]:
            project_policies = sa.select(RetentionPolicy.project_id).where(
                RetentionPolicy.project_id.is_not(None)
            )
            artifact_policies = sa.select(RetentionPolicy.artifact_id).where(
                RetentionPolicy.artifact_id.is_not(None)
            )
            own_ttl = sa.select(Version.artifact_id).where(
                Version.state == COMMITTED, Version.ttl_seconds > 0
            )
            query = (
                sa.select(Artifact.id, Project.name)
                .join(Project, Project.id == Artifact.project_id)
                .where(
                    sa.or_(
                        Artifact.project_id.in_(project_policies),
                        Artifact.id.in_(artifact_policies),
                        Artifact.id.in_(own_ttl),
                    )
                )
                .order_by(Artifact.id)
            )
            if project is not None:
                query = query.where(Project.name == project)
            return [(int(a), str(p)) for a, p in s.execute(query)]

        result: list[tuple[int, str]] = self._read(work)
        return result

    def _evaluate(
        self, artifact_id: int, project: str, at: datetime, expiring: set[int],
        report: RetentionReport, dry_run: bool, user: str | None,
    ) -> None:  # fmt: skip
        def work(s: Session) -> RetentionReport:
            artifact = s.get(Artifact, artifact_id)
            assert artifact is not None
            if not dry_run:
                lock_artifact(s, artifact.id)
            part = RetentionReport(dry_run=dry_run, at=at)
            _evaluate_artifact(s, artifact, project, at, expiring, part, dry_run=dry_run, user=user)
            return part

        # a retried transaction starts again from a fresh partial report
        part: RetentionReport = (self._read if dry_run else self._write)(work)
        report.removed.extend(part.removed)
        report.spared.extend(part.spared)
        report.notes.extend(part.notes)
        report.logical_bytes += part.logical_bytes

    def _live_roots(self, gone: set[int]) -> tuple[list[str], list[str]]:
        """(root digests of every live version but ``gone``, every run's saved diff)."""

        def work(s: Session) -> tuple[list[str], list[str]]:
            roots = {
                d
                for vid, d in s.execute(
                    sa.select(Version.id, Version.digest).where(Version.state == COMMITTED)
                )
                if vid not in gone
            }
            diffs = set(
                s.scalars(sa.select(Run.git_diff_digest).where(Run.git_diff_digest.is_not(None)))
            )
            return sorted(roots), sorted(d for d in diffs if d)

        result: tuple[list[str], list[str]] = self._read(work)
        return result


def _conforms(retention: SqlRetention) -> Retention:
    return retention  # mypy checks that SqlRetention implements Retention


# --- the schedule -----------------------------------------------------------------------------


class RetentionScheduler:
    """Evaluates retention every ``interval`` seconds in a daemon thread. With several server
    processes on PostgreSQL, one evaluates at a time (the advisory lock; the others skip that
    round). ``measure`` (optional) reports the bytes a round makes free at the next gc."""

    def __init__(
        self, engine: sa.Engine, interval: float, *, measure: Measure | None = None
    ) -> None:
        self.retention = SqlRetention(engine)
        self.interval = interval
        self.measure = measure
        self.last: RetentionReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> RetentionReport | None:
        """One round; None when another process was evaluating."""
        with self.retention.evaluator() as got:
            if not got:
                return None
            # recorded as made on the server (history, audit log) by the schedule
            with acting(Actor(user=SCHEDULE_USER, address=None)):
                report = self.retention._apply(None, False, SCHEDULE_USER, None, self.measure)
        self.last = report
        if report.removed or report.unlinked:
            log.warning(
                "retention: deleted %d version(s) (%d expired), unlinked %d; %s bytes free at "
                "the next gc",
                len(report.removed),
                sum(1 for r in report.removed if r.reason == "expired"),
                len(report.unlinked),
                "?" if report.exclusive_bytes is None else report.exclusive_bytes,
            )
        return report

    def start(self) -> RetentionScheduler:
        self._thread = threading.Thread(target=self._loop, name="cairn-retention", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as exc:  # the database may be away for a while: try next round
                log.error("retention round failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


__all__ = ["SCHEDULE_USER", "RetentionScheduler", "SqlRetention"]
