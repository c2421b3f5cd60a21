"""Webhooks in SQL: the configuration, the outbox of deliveries and the log of attempts.

Events are collected during a write transaction (`version_event` from the version history,
`collection_alias_events` from the registry's audited alias changes) and turned into outbox rows
just before that transaction commits (a ``before_commit`` hook), one per matching webhook: a
change and its deliveries commit together or not at all. When no webhook matches, nothing is
written. An alias taken from one version and given to another in the same transaction is one
``alias.moved`` event.

Delivery (`cairn.service.webhooks`) claims due rows: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
the single writer's ``BEGIN IMMEDIATE`` on SQLite, with a lease so that a worker that died
mid-delivery gives its rows back.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from cairn.core.names import check_artifact_name, check_project
from cairn.errors import InvalidInputError, NotFoundError
from cairn.metadata.engine import is_sqlite, transaction
from cairn.metadata.tables import (
    Artifact,
    Collection,
    CollectionLink,
    Project,
    RegistryRow,
    Version,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from cairn.service.audit import current_actor
from cairn.service.sql.common import utcnow

T = TypeVar("T")

#: every event type a webhook can ask for ("*" or "alias.*" ask for several)
EVENT_TYPES = (
    "version.created",
    "version.deleted",
    "version.expired",
    "version.metadata",
    "version.description",
    "version.tags",
    "alias.added",
    "alias.moved",
    "alias.removed",
    "webhook.test",
)
_INFO_KEY = "cairn.webhook_events"
_FIELD_EVENTS = {
    "description": "version.description",
    "metadata": "version.metadata",
    "tags": "version.tags",
    "deleted": "version.deleted",
    "expired": "version.expired",  # retention: a version's TTL passed (then version.deleted)
}

#: set after a transaction wrote deliveries, so that a worker in this process wakes up at once
wake = threading.Event()


@dataclass
class WebhookInfo:
    id: int
    project: str | None
    registry: str | None
    url: str
    events: list[str]
    created_at: datetime
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "registry": self.registry,
            "url": self.url,
            "events": self.events,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WebhookInfo:
        return cls(
            id=d["id"],
            project=d["project"],
            registry=d["registry"],
            url=d["url"],
            events=list(d["events"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            created_by=d.get("created_by"),
        )


@dataclass
class DeliveryInfo:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    idempotency_key: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    response_ms: int | None
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "response_ms": self.response_ms,
            "log": self.log,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeliveryInfo:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(d[key]) if d.get(key) else None

        return cls(
            id=d["id"],
            webhook_id=d["webhook_id"],
            event_id=d["event_id"],
            event_type=d["event_type"],
            idempotency_key=d["idempotency_key"],
            status=d["status"],
            attempts=d["attempts"],
            created_at=datetime.fromisoformat(d["created_at"]),
            next_attempt_at=datetime.fromisoformat(d["next_attempt_at"]),
            delivered_at=when("delivered_at"),
            last_status_code=d.get("last_status_code"),
            last_error=d.get("last_error"),
            response_ms=d.get("response_ms"),
            log=list(d.get("log") or []),
        )


@dataclass
class Claimed:
    """A delivery a worker holds (leased) while it sends it."""

    id: int
    webhook_id: int
    url: str
    secret: str
    body: str
    event_type: str
    event_id: str
    idempotency_key: str
    attempts: int


# --- collecting events inside a transaction -----------------------------------------------------


def _actor(user: str | None) -> str | None:
    actor = current_actor()
    return actor.user if actor is not None and actor.user is not None else user


def version_event(
    s: Session, version_id: int, field_name: str, old: Any, new: Any, at: datetime, user: Any
) -> None:
    """Note a change of a version (a history entry) for the webhooks of its project."""
    s.info.setdefault(_INFO_KEY, []).append(
        ("version", version_id, field_name, old, new, at, _actor(user))
    )


def collection_alias_events(
    s: Session,
    registry: str,
    collection: str,
    changes: list[tuple[str, int | None, int | None]],
    user: str | None,
) -> None:
    """Note alias changes in a registry collection: (alias, old number, new number)."""
    pending = s.info.setdefault(_INFO_KEY, [])
    for alias, old, new in changes:
        pending.append(
            ("collection", registry, collection, alias, old, new, utcnow(), _actor(user))
        )


def _matches(wanted: list[str], event_type: str) -> bool:
    if not wanted:
        return True
    for w in wanted:
        if w == "*" or w == event_type:
            return True
        if w.endswith(".*") and event_type.startswith(w[:-1]):
            return True
    return False


def _version_facts(s: Session, version_id: int) -> dict[str, Any]:
    row = s.execute(
        sa.select(Version.id, Version.version, Version.digest, Artifact.id, Artifact.name,
                  Artifact.type, Project.name)
        .join(Artifact, Artifact.id == Version.artifact_id)
        .join(Project, Project.id == Artifact.project_id)
        .where(Version.id == version_id)
    ).one()  # fmt: skip
    return {
        "version_id": row[0],
        "version": f"v{row[1]}",
        "digest": row[2],
        "artifact_id": row[3],
        "artifact": row[4],
        "type": row[5],
        "project": row[6],
    }


def _event(kind: str, at: datetime, actor: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "type": kind,
        "time": at.isoformat(),
        "actor": actor,
        "project": None,
        "registry": None,
        "collection": None,
        "artifact": None,
        "version": None,
        "version_id": None,
        "digest": None,
        "alias": None,
        "before": None,
        "after": None,
    }
    body.update(fields)
    return body


def _build_events(s: Session, raw: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Raw notes → event payloads, an alias removed here and added there becoming a move."""
    events: list[dict[str, Any]] = []
    facts: dict[int, dict[str, Any]] = {}
    # (artifact id, alias) -> [removed-from facts, added-to facts, at, actor]
    alias_changes: dict[tuple[int, str], list[Any]] = {}

    def version(vid: int) -> dict[str, Any]:
        if vid not in facts:
            facts[vid] = _version_facts(s, vid)
        return facts[vid]

    def alias_change(f: dict[str, Any], alias: str, added: bool, at: datetime, who: Any) -> None:
        slot = alias_changes.setdefault((f["artifact_id"], alias), [None, None, at, who])
        slot[1 if added else 0] = f
        slot[2], slot[3] = at, who

    for note in raw:
        if note[0] == "version":
            _, vid, fname, old, new, at, who = note
            f = version(vid)
            base = {k: f[k] for k in ("project", "artifact", "version", "version_id", "digest")}
            if fname == "created":
                events.append(_event("version.created", at, who, **base, after=new))
                for alias in (new or {}).get("aliases", []):
                    alias_change(f, alias, True, at, who)
            elif fname == "aliases":
                for alias in sorted(set(old or []) - set(new or [])):
                    alias_change(f, alias, False, at, who)
                for alias in sorted(set(new or []) - set(old or [])):
                    alias_change(f, alias, True, at, who)
            elif fname in _FIELD_EVENTS:
                events.append(_event(_FIELD_EVENTS[fname], at, who, **base, before=old, after=new))
        else:
            _, reg, coll, alias, old_n, new_n, at, who = note
            kind = (
                "alias.added"
                if old_n is None
                else "alias.removed"
                if new_n is None
                else ("alias.moved")
            )
            number = new_n if new_n is not None else old_n
            link = s.execute(
                sa.select(CollectionLink.version_id)
                .join(Collection, Collection.id == CollectionLink.collection_id)
                .join(RegistryRow, RegistryRow.id == Collection.registry_id)
                .where(
                    RegistryRow.name == reg,
                    Collection.name == coll,
                    CollectionLink.number == number,
                )
            ).scalar_one_or_none()
            source = version(link) if link is not None else None
            events.append(
                _event(
                    kind, at, who, registry=reg, collection=coll, alias=alias,
                    version=f"v{number}",
                    version_id=source["version_id"] if source else None,
                    digest=source["digest"] if source else None,
                    source=(
                        {k: source[k] for k in ("project", "artifact", "version")}
                        if source else None
                    ),
                    before=None if old_n is None else f"v{old_n}",
                    after=None if new_n is None else f"v{new_n}",
                )
            )  # fmt: skip
    for (_, alias), (removed, added, at, who) in alias_changes.items():
        holder = added or removed
        kind = "alias.moved" if removed and added else "alias.added" if added else "alias.removed"
        events.append(
            _event(
                kind, at, who, alias=alias,
                **{k: holder[k] for k in ("project", "artifact", "version", "version_id",
                                          "digest")},
                before=removed["version"] if removed else None,
                after=added["version"] if added else None,
            )
        )  # fmt: skip
    return events


def _before_commit(s: Session) -> None:
    raw = [
        n
        for n in s.info.pop(_INFO_KEY, None) or ()
        if n[0] == "collection" or n[2] in _FIELD_EVENTS or n[2] in ("created", "aliases")
    ]
    if not raw:
        return
    version_ids = {n[1] for n in raw if n[0] == "version"}
    projects = {_version_facts_project(s, vid) for vid in sorted(version_ids)[:1]}
    if len(version_ids) > 1:  # one transaction may touch several projects' versions
        projects = set(
            s.scalars(
                sa.select(Project.name)
                .join(Artifact, Artifact.project_id == Project.id)
                .join(Version, Version.artifact_id == Artifact.id)
                .where(Version.id.in_(sorted(version_ids)))
                .distinct()
            )
        )
    registries = {n[1] for n in raw if n[0] == "collection"}
    hooks = list(
        s.scalars(
            sa.select(Webhook).where(
                sa.or_(
                    Webhook.project.in_(projects or [""]),
                    Webhook.registry_name.in_(registries or [""]),
                )
            )
        )
    )
    if not hooks:
        return
    now = utcnow()
    rows = []
    for ev in _build_events(s, raw):
        for hook in hooks:
            scope_ok = (
                hook.registry_name == ev["registry"]
                if ev["registry"] is not None
                else hook.project == ev["project"]
            )
            if scope_ok and _matches(hook.events, ev["type"]):
                rows.append(_delivery_row(hook.id, ev, now))
    if rows:
        s.execute(sa.insert(WebhookDelivery), rows)
        s.info["cairn.webhook_wake"] = True


def _version_facts_project(s: Session, version_id: int) -> str:
    name: str = s.execute(
        sa.select(Project.name)
        .join(Artifact, Artifact.project_id == Project.id)
        .join(Version, Version.artifact_id == Artifact.id)
        .where(Version.id == version_id)
    ).scalar_one()
    return name


def _after_commit(s: Session) -> None:
    if s.info.pop("cairn.webhook_wake", False):
        wake.set()


def _after_rollback(s: Session) -> None:
    s.info.pop(_INFO_KEY, None)
    s.info.pop("cairn.webhook_wake", None)


event.listen(Session, "before_commit", _before_commit)
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", lambda s, _t: _after_rollback(s))


def _delivery_row(webhook_id: int, ev: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "event_id": ev["id"],
        "event_type": ev["type"],
        "body": json.dumps(ev, separators=(",", ":"), sort_keys=True, default=str),
        "idempotency_key": f"{ev['id']}-{webhook_id}",
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


# --- configuration, log, claiming -------------------------------------------------------------


def check_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidInputError("a webhook URL is a string of at most 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"invalid webhook URL {url!r}: only http:// and https:// URLs with a host are accepted"
        )
    return url


def check_events(events: object) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
        raise InvalidInputError("events is a list of event types")
    for e in events:
        if (
            e != "*"
            and e not in EVENT_TYPES
            and not (e.endswith(".*") and any(t.startswith(e[:-1]) for t in EVENT_TYPES))
        ):
            raise InvalidInputError(
                f"unknown event type {e!r}: use one of {', '.join(EVENT_TYPES)}, "
                "'*' or a prefix such as 'alias.*'"
            )
    return sorted(set(events))


def _info(h: Webhook) -> WebhookInfo:
    return WebhookInfo(
        id=h.id,
        project=h.project,
        registry=h.registry_name,
        url=h.url,
        events=list(h.events),
        created_at=h.created_at,
        created_by=h.created_by,
    )


def _delivery_info(d: WebhookDelivery) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id,
        webhook_id=d.webhook_id,
        event_id=d.event_id,
        event_type=d.event_type,
        idempotency_key=d.idempotency_key,
        status=d.status,
        attempts=d.attempts,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at,
        delivered_at=d.delivered_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        response_ms=d.response_ms,
    )


class WebhookStore:
    """Webhooks, their deliveries and attempts in the metadata database of ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def _read(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=True)

    def add(
        self,
        url: str,
        *,
        project: str | None = None,
        registry: str | None = None,
        events: list[str] | None = None,
        secret: str | None = None,
        user: str | None = None,
    ) -> tuple[WebhookInfo, str]:
        """A new webhook; answers it and its secret (generated unless given)."""
        check_url(url)
        wanted = check_events(events)
        if (project is None) == (registry is None):
            raise InvalidInputError("a webhook belongs to a project or to a registry (one)")
        if project is not None:
            check_project(project)
        if registry is not None:
            check_artifact_name(registry)
        if secret is None:
            secret = "whsec_" + secrets.token_urlsafe(32)
        elif not isinstance(secret, str) or not 16 <= len(secret) <= 255:
            raise InvalidInputError("a webhook secret has 16 to 255 characters")

        def work(s: Session) -> WebhookInfo:
            hook = Webhook(
                project=project,
                registry_name=registry,
                url=url,
                secret=secret,
                events=wanted,
                created_at=utcnow(),
                created_by=user,
            )
            s.add(hook)
            s.flush()
            return _info(hook)

        return self._write(work), secret

    def get(self, webhook_id: int) -> WebhookInfo:
        def work(s: Session) -> WebhookInfo:
            return _info(self._find(s, webhook_id))

        return self._read(work)

    @staticmethod
    def _find(s: Session, webhook_id: int) -> Webhook:
        hook = s.get(Webhook, webhook_id)
        if hook is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return hook

    def list_webhooks(
        self, *, project: str | None = None, registry: str | None = None
    ) -> list[WebhookInfo]:
        def work(s: Session) -> list[WebhookInfo]:
            query = sa.select(Webhook).order_by(Webhook.id)
            if project is not None:
                query = query.where(Webhook.project == project)
            if registry is not None:
                query = query.where(Webhook.registry_name == registry)
            return [_info(h) for h in s.scalars(query)]

        return self._read(work)

    def remove(self, webhook_id: int) -> None:
        def work(s: Session) -> None:
            self._find(s, webhook_id)
            s.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.webhook_id == webhook_id))
            s.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
            s.execute(sa.delete(Webhook).where(Webhook.id == webhook_id))

        self._write(work)

    def send_test(self, webhook_id: int, *, user: str | None = None) -> DeliveryInfo:
        """Queue a ``webhook.test`` event for this webhook only."""

        def work(s: Session) -> DeliveryInfo:
            hook = self._find(s, webhook_id)
            now = utcnow()
            ev = _event(
                "webhook.test", now, _actor(user), project=hook.project,
                registry=hook.registry_name,
            )  # fmt: skip
            row = WebhookDelivery(**_delivery_row(hook.id, ev, now))
            s.add(row)
            s.flush()
            s.info["cairn.webhook_wake"] = True
            return _delivery_info(row)

        return self._write(work)

    def deliveries(
        self, webhook_id: int, *, limit: int = 50, status: str | None = None
    ) -> list[DeliveryInfo]:
        """The newest deliveries first, each with its attempts."""

        def work(s: Session) -> list[DeliveryInfo]:
            self._find(s, webhook_id)
            query = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            if status is not None:
                query = query.where(WebhookDelivery.status == status)
            rows = list(s.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))
            infos = [_delivery_info(d) for d in rows]
            by_id = {i.id: i for i in infos}
            if by_id:
                for a in s.scalars(
                    sa.select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id.in_(list(by_id)))
                    .order_by(WebhookAttempt.id)
                ):
                    by_id[a.delivery_id].log.append(
                        {
                            "attempt": a.attempt,
                            "at": a.at.isoformat(),
                            "status_code": a.status_code,
                            "error": a.error,
                            "response_ms": a.response_ms,
                            "worker": a.worker,
                        }
                    )
            return infos

        return self._read(work)

    def delivery_body(self, delivery_id: int) -> str:
        def work(s: Session) -> str:
            row = s.get(WebhookDelivery, delivery_id)
            if row is None:
                raise NotFoundError(f"no webhook delivery {delivery_id}")
            return row.body

        return self._read(work)

    @staticmethod
    def _due(now: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(
            sa.and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
            sa.and_(WebhookDelivery.status == "delivering", WebhookDelivery.lease_until < now),
        )

    def has_due(self) -> bool:
        """Is any delivery due now?"""

        def work(s: Session) -> bool:
            query = sa.select(WebhookDelivery.id).where(self._due(utcnow())).limit(1)
            return s.scalar(query) is not None

        return self._read(work)

    def prune(self, before: datetime) -> int:
        """Delete deliveries finished (delivered or failed) before ``before``, with their
        attempts; the number deleted. Pending ones are never pruned."""

        def work(s: Session) -> int:
            old = sa.select(WebhookDelivery.id).where(
                WebhookDelivery.status.in_(("delivered", "failed")),
                WebhookDelivery.created_at < before,
                sa.func.coalesce(WebhookDelivery.delivered_at, WebhookDelivery.created_at) < before,
            )
            ids = list(s.scalars(old.limit(10_000)))
            if ids:
                s.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
                s.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
            return len(ids)

        return self._write(work)

    def claim(self, limit: int, lease: float) -> list[Claimed]:
        """Take up to ``limit`` due deliveries for ``lease`` seconds (pending ones whose time
        came, and ones whose holder's lease ran out)."""

        def work(s: Session) -> list[Claimed]:
            now = utcnow()
            due = self._due(now)
            query = (
                sa.select(WebhookDelivery.id)
                .where(due)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
            )
            if not is_sqlite(s):
                query = query.with_for_update(skip_locked=True)
            ids = list(s.scalars(query))
            if not ids:
                return []
            s.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(status="delivering", lease_until=now + timedelta(seconds=lease))
            )
            rows = s.execute(
                sa.select(WebhookDelivery, Webhook.url, Webhook.secret)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id.in_(ids))
                .order_by(WebhookDelivery.id)
            ).all()
            return [
                Claimed(
                    id=d.id,
                    webhook_id=d.webhook_id,
                    url=url,
                    secret=secret,
                    body=d.body,
                    event_type=d.event_type,
                    event_id=d.event_id,
                    idempotency_key=d.idempotency_key,
                    attempts=d.attempts,
                )
                for d, url, secret in rows
            ]

        return self._write(work)

    def finish(
        self,
        claimed: Claimed,
        *,
        status_code: int | None,
        error: str | None,
        response_ms: int,
        ok: bool,
        retry_at: datetime | None,
        worker: str | None,
    ) -> None:
        """Record one attempt: delivered, retried at ``retry_at``, or given up (None)."""

        def work(s: Session) -> None:
            now = utcnow()
            attempt = claimed.attempts + 1
            if ok:
                values: dict[str, Any] = {"status": "delivered", "delivered_at": now}
            elif retry_at is not None:
                values = {"status": "pending", "next_attempt_at": retry_at}
            else:
                values = {"status": "failed"}
            values.update(
                attempts=attempt,
                lease_until=None,
                last_status_code=status_code,
                last_error=error,
                response_ms=response_ms,
            )
            done = s.execute(
                sa.update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claimed.id,
                    WebhookDelivery.status == "delivering",
                    WebhookDelivery.attempts == claimed.attempts,
                )
                .values(**values)
            )
            if getattr(done, "rowcount", 1) == 0:
                return  # removed meanwhile, or its lease ran out and another worker took it
            s.add(
                WebhookAttempt(
                    delivery_id=claimed.id,
                    webhook_id=claimed.webhook_id,
                    attempt=attempt,
                    at=now,
                    status_code=status_code,
                    error=error,
                    response_ms=response_ms,
                    worker=worker,
                )
            )

        self._write(work)


__all__ = [
    "EVENT_TYPES",
    "Claimed",
    "DeliveryInfo",
    "WebhookInfo",
    "WebhookStore",
    "check_events",
    "check_url",
    "collection_alias_events",
    "version_event",
    "wake",
]
