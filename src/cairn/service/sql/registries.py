"""Registries above projects: collections of linked versions (no bytes copied), each with its own
version numbers (v0, v1, ... in link order), aliases ('latest' moves by itself), description,
tags and append-only history; per-registry roles; protected aliases; as-of questions ("which
version held 'production' at noon on Monday?") answered from the history.

Writers lock the collection row (``FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` serialises
writers on SQLite) before numbering a link or moving an alias.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.digest import is_digest
from cairn.core.names import check_alias, check_artifact_name, check_project, is_version_label
from cairn.core.records import (
    CollectionHistoryEntry,
    CollectionInfo,
    LinkInfo,
    RegistryInfo,
)
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidInputError,
    InvalidNameError,
    PermissionDeniedError,
    RegistryNotFoundError,
    StateError,
)
from cairn.metadata.tables import (
    Artifact,
    Collection,
    CollectionAlias,
    CollectionHistory,
    CollectionLink,
    Project,
    RegistryMember,
    RegistryRow,
    Version,
)
from cairn.service.search import parse_filters, parse_order
from cairn.service.sql.artifacts import find_version, version_infos
from cairn.service.sql.audit import record
from cairn.service.sql.common import COMMITTED, SqlBase, chunks, utcnow
from cairn.service.sql.runs import find_run
from cairn.service.sql.search import Compiler, has_tag
from cairn.service.sql.webhooks import collection_alias_events
from cairn.service.validate import (
    check_aliases,
    check_page,
    check_str,
    check_tags,
    listing,
)

REGISTRY_ROLES = ("viewer", "member", "maintainer", "admin")
_RANK = {role: i for i, role in enumerate(REGISTRY_ROLES)}


def check_registry_name(name: object) -> str:
    try:
        return check_project(name)
    except InvalidNameError:
        raise InvalidNameError(
            f"invalid registry name {name!r}: use 1-128 characters: letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        ) from None


def check_role(role: object) -> str:
    if role not in REGISTRY_ROLES:
        raise InvalidInputError(
            f"invalid registry role {role!r}: use one of {', '.join(REGISTRY_ROLES)}"
        )
    return str(role)


def role_at_least(role: str | None, need: str) -> bool:
    return role is not None and _RANK[role] >= _RANK[need]


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str):
        raise InvalidNameError(f"invalid version reference {ref!r}")
    if ref.startswith("blake3:"):
        if not is_digest(ref):
            raise InvalidNameError(
                f"invalid digest {ref!r}: expected 'blake3:' and 64 lowercase hex digits"
            )
    elif ref != "latest" and not is_version_label(ref):
        check_alias(ref)
    return ref


def _aware(at: object) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidInputError(
            f"'at' is a timezone-aware date and time (e.g. 2026-11-30T12:00Z), not {at!r}"
        )
    return at


# --- lookups inside a transaction -----------------------------------------------------------


def find_registry(s: Session, name: str, *, lock: bool = False) -> RegistryRow:
    query = sa.select(RegistryRow).where(RegistryRow.name == name)
    if lock:
        query = query.with_for_update()
    row = s.scalars(query).one_or_none()
    if row is not None:
        return row
    names = list(s.scalars(sa.select(RegistryRow.name).order_by(RegistryRow.name).limit(1000)))
    if not names:
        raise RegistryNotFoundError(
            f"registry {name!r} does not exist, and there are no registries yet: create one "
            "with create_registry (cairn registry create NAME)"
        )
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RegistryNotFoundError(
        f"registry {name!r} does not exist.{hint} Registries: {listing(names, len(names))}."
    )


def _collection(s: Session, reg: RegistryRow, name: str, *, lock: bool = False) -> Collection:
    query = sa.select(Collection).where(Collection.registry_id == reg.id, Collection.name == name)
    if lock:
        query = query.with_for_update()
    coll = s.scalars(query).one_or_none()
    if coll is not None:
        return coll
    names = list(
        s.scalars(
            sa.select(Collection.name)
            .where(Collection.registry_id == reg.id)
            .order_by(Collection.name)
            .limit(1000)
        )
    )
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    there = f" Collections there: {listing(names, len(names))}." if names else ""
    raise ArtifactNotFoundError(
        f"registry {reg.name!r} has no collection {name!r}.{hint}{there} Link a version into it "
        "to create it (run.link_artifact(art, 'registry/collection'))"
    )


def _live(coll: Collection) -> Any:
    return sa.select(CollectionLink).where(
        CollectionLink.collection_id == coll.id, CollectionLink.unlinked_at.is_(None)
    )


def _find_link(s: Session, reg: RegistryRow, coll: Collection, ref: str) -> CollectionLink:
    live = _live(coll)
    if ref == "latest":
        query = live.order_by(CollectionLink.number.desc()).limit(1)
    elif is_version_label(ref):
        query = live.where(CollectionLink.number == int(ref[1:]))
    elif ref.startswith("blake3:"):
        query = (
            live.join(Version, Version.id == CollectionLink.version_id)
            .where(Version.digest == ref)
            .order_by(CollectionLink.number.desc())
            .limit(1)
        )
    else:
        query = live.join(CollectionAlias, CollectionAlias.link_id == CollectionLink.id).where(
            CollectionAlias.collection_id == coll.id, CollectionAlias.alias == ref
        )
    link: CollectionLink | None = s.scalars(query).first()
    if link is None:
        raise ArtifactNotFoundError(_missing(s, reg, coll, ref))
    return link


def _find_link_at(
    s: Session, reg: RegistryRow, coll: Collection, ref: str, at: datetime
) -> CollectionLink:
    """The link ``ref`` named at time ``at``, from the append-only history."""
    linked = sa.select(CollectionLink).where(
        CollectionLink.collection_id == coll.id,
        CollectionLink.linked_at <= at,
        sa.or_(CollectionLink.unlinked_at.is_(None), CollectionLink.unlinked_at > at),
    )
    link: CollectionLink | None
    if ref == "latest":
        link = s.scalars(linked.order_by(CollectionLink.number.desc()).limit(1)).first()
    elif is_version_label(ref):
        link = s.scalars(linked.where(CollectionLink.number == int(ref[1:]))).first()
    elif ref.startswith("blake3:"):
        link = s.scalars(
            linked.join(Version, Version.id == CollectionLink.version_id)
            .where(Version.digest == ref)
            .order_by(CollectionLink.number.desc())
            .limit(1)
        ).first()
    else:
        holder = s.execute(
            sa.select(CollectionHistory.link_id)
            .where(
                CollectionHistory.collection_id == coll.id,
                CollectionHistory.field == "alias",
                CollectionHistory.alias == ref,
                CollectionHistory.at <= at,
            )
            .order_by(CollectionHistory.id.desc())
            .limit(1)
        ).first()
        link = s.get(CollectionLink, holder[0]) if holder and holder[0] is not None else None
    if link is None:
        raise ArtifactNotFoundError(
            f"{reg.name}/{coll.name} had no version {ref!r} at {at.isoformat()}"
        )
    return link


def _missing(s: Session, reg: RegistryRow, coll: Collection, ref: str) -> str:
    where = f"{reg.name}/{coll.name}"
    count, top = s.execute(
        sa.select(sa.func.count(), sa.func.max(CollectionLink.number)).where(
            CollectionLink.collection_id == coll.id, CollectionLink.unlinked_at.is_(None)
        )
    ).one()
    if not count:
        return f"{where} has no linked versions (all were unlinked), so {ref!r} does not exist"
    aliases = list(
        s.execute(
            sa.select(CollectionAlias.alias, CollectionLink.number)
            .join(CollectionLink, CollectionLink.id == CollectionAlias.link_id)
            .where(CollectionAlias.collection_id == coll.id)
            .order_by(CollectionAlias.alias)
            .limit(6)
        )
    )
    shown = ", ".join(f"{a} (v{n})" for a, n in aliases[:5]) + (", ..." if len(aliases) > 5 else "")
    return (
        f"{where} has no version or alias {ref!r}. It has {count} linked version"
        f"{'s' if count != 1 else ''} (latest is v{top})"
        + (f"; aliases: {shown}" if shown else "; no aliases")
        + ". Use 'latest', a version such as 'v0', an alias or a digest."
    )


def _aliases_by_link(s: Session, link_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for chunk in chunks(link_ids):
        for link_id, alias in s.execute(
            sa.select(CollectionAlias.link_id, CollectionAlias.alias)
            .where(CollectionAlias.link_id.in_(chunk))
            .order_by(CollectionAlias.alias)
        ):
            out[link_id].append(alias)
    return out


def link_infos(s: Session, links: Sequence[CollectionLink]) -> list[LinkInfo]:
    """LinkInfo for each link, with a fixed number of queries for the whole list."""
    if not links:
        return []
    coll_ids = sorted({link.collection_id for link in links})
    names: dict[int, tuple[str, str]] = {}
    latest: dict[int, int] = {}
    for chunk in chunks(coll_ids):
        for cid, cname, rname in s.execute(
            sa.select(Collection.id, Collection.name, RegistryRow.name)
            .join(RegistryRow, RegistryRow.id == Collection.registry_id)
            .where(Collection.id.in_(chunk))
        ):
            names[cid] = (rname, cname)
        for cid, top in s.execute(
            sa.select(CollectionLink.collection_id, sa.func.max(CollectionLink.number))
            .where(CollectionLink.collection_id.in_(chunk), CollectionLink.unlinked_at.is_(None))
            .group_by(CollectionLink.collection_id)
        ):
            latest[cid] = top
    aliases = _aliases_by_link(s, [link.id for link in links])
    version_rows = list(
        s.scalars(sa.select(Version).where(Version.id.in_({link.version_id for link in links})))
    )
    targets = {v.id: v for v in version_infos(s, version_rows)}
    result = []
    for link in links:
        rname, cname = names[link.collection_id]
        is_latest = link.unlinked_at is None and latest.get(link.collection_id) == link.number
        result.append(
            LinkInfo(
                registry=rname,
                collection=cname,
                version=link.number,
                aliases=(["latest"] if is_latest else []) + aliases[link.id],
                linked_at=link.linked_at,
                target=targets[link.version_id],
                user=link.user,
                run_id=link.run_id,
                unlinked_at=link.unlinked_at,
            )
        )
    return result


def _registry_info(s: Session, row: RegistryRow) -> RegistryInfo:
    count = s.scalar(
        sa.select(sa.func.count()).select_from(Collection).where(Collection.registry_id == row.id)
    )
    return RegistryInfo(
        name=row.name,
        description=row.description,
        protected_aliases=list(row.protected_aliases),
        created_at=row.created_at,
        created_by=row.created_by,
        collection_count=count or 0,
    )


def _collection_info(s: Session, reg: RegistryRow, coll: Collection) -> CollectionInfo:
    count, top = s.execute(
        sa.select(sa.func.count(), sa.func.max(CollectionLink.number)).where(
            CollectionLink.collection_id == coll.id, CollectionLink.unlinked_at.is_(None)
        )
    ).one()
    return CollectionInfo(
        registry=reg.name,
        name=coll.name,
        type=coll.type,
        description=coll.description,
        tags=list(coll.tags),
        created_at=coll.created_at,
        updated_at=coll.updated_at,
        version_count=count or 0,
        latest_version=top,
    )


def _history(
    s: Session,
    coll: Collection,
    field: str,
    at: datetime,
    user: str | None,
    run_id: str | None,
    *,
    link: CollectionLink | None = None,
    alias: str | None = None,
    old: Any = None,
    new: Any = None,
) -> None:
    s.add(
        CollectionHistory(
            collection_id=coll.id,
            link_id=link.id if link is not None else None,
            field=field,
            alias=alias,
            old=old,
            new=new,
            at=at,
            run_id=run_id,
            user=user,
        )
    )


def _guard(reg: RegistryRow, alias: str, allow_protected: bool, doing: str) -> None:
    if not allow_protected and alias in reg.protected_aliases:
        raise PermissionDeniedError(
            f"alias {alias!r} is protected in registry {reg.name!r}: only its maintainers and "
            f"admins may {doing} it (ask one of them, or use another alias)"
        )


def _move_aliases(
    s: Session,
    reg: RegistryRow,
    coll: Collection,
    link: CollectionLink,
    add: Sequence[str],
    remove: Sequence[str],
    *,
    allow_protected: bool,
    user: str | None,
    run_id: str | None,
    at: datetime,
) -> list[tuple[str, int | None, int | None]]:
    """Point ``add`` at ``link`` (moving them from other links) and drop ``remove`` from it.
    Returns (alias, from number, to number) for each change."""
    holders = {
        alias: (row_id, link_id, number)
        for alias, row_id, link_id, number in s.execute(
            sa.select(
                CollectionAlias.alias,
                CollectionAlias.id,
                CollectionAlias.link_id,
                CollectionLink.number,
            )
            .join(CollectionLink, CollectionLink.id == CollectionAlias.link_id)
            .where(
                CollectionAlias.collection_id == coll.id,
                CollectionAlias.alias.in_([*add, *remove]),
            )
        )
    }
    changes: list[tuple[str, int | None, int | None]] = []
    for alias in remove:
        held = holders.get(alias)
        if held is None or held[1] != link.id:
            continue  # not on this version: nothing to remove
        _guard(reg, alias, allow_protected, "remove")
        s.execute(sa.delete(CollectionAlias).where(CollectionAlias.id == held[0]))
        _history(s, coll, "alias", at, user, run_id, alias=alias, old=held[2], new=None)
        changes.append((alias, held[2], None))
    for alias in add:
        held = holders.get(alias)
        if held is not None and held[1] == link.id:
            continue
        _guard(reg, alias, allow_protected, "set or move")
        if held is not None:
            s.execute(
                sa.update(CollectionAlias)
                .where(CollectionAlias.id == held[0])
                .values(link_id=link.id)
            )
        else:
            s.add(CollectionAlias(collection_id=coll.id, alias=alias, link_id=link.id))
        old = held[2] if held is not None else None
        _history(
            s, coll, "alias", at, user, run_id, link=link, alias=alias, old=old, new=link.number
        )
        changes.append((alias, old, link.number))
    if changes:
        coll.updated_at = at
    s.flush()
    return changes


# --- the mixin ------------------------------------------------------------------------------


class RegistriesMixin(SqlBase):
    # --- registries and roles -----------------------------------------------------------------

    def create_registry(
        self,
        name: str,
        *,
        description: str = "",
        protected_aliases: Sequence[str] = (),
        user: str | None = None,
    ) -> RegistryInfo:
        """A new registry; ``user`` (when given) becomes its admin."""
        check_registry_name(name)
        check_str("description", description)
        protected = check_aliases(protected_aliases)
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> RegistryInfo:
            if s.scalar(sa.select(RegistryRow.id).where(RegistryRow.name == name)) is not None:
                raise StateError(f"registry {name!r} already exists")
            if s.scalar(sa.select(Project.id).where(Project.name == name)) is not None:
                raise InvalidNameError(
                    f"{name!r} is already a project's name; a registry needs a name of its own "
                    "(so that 'name/collection:alias' means one thing)"
                )
            row = RegistryRow(
                name=name,
                description=description,
                protected_aliases=sorted(protected),
                created_at=utcnow(),
                created_by=user,
            )
            s.add(row)
            s.flush()
            if user is not None:
                s.add(RegistryMember(registry_id=row.id, user=user, role="admin"))
            after = {"description": description, "protected_aliases": sorted(protected)}
            record(s, "registry.create", name, None, after, registry=name, user=user)
            return _registry_info(s, row)

        return self._write(work)

    def get_registry(self, name: str) -> RegistryInfo:
        check_registry_name(name)
        return self._read(lambda s: _registry_info(s, find_registry(s, name)))

    def is_registry(self, name: str) -> bool:
        """Whether a registry named ``name`` exists (``name/collection:ref`` then names a
        collection in it, not an artifact of a project)."""
        if not isinstance(name, str):
            return False
        return self._read(
            lambda s: (
                s.scalar(sa.select(RegistryRow.id).where(RegistryRow.name == name)) is not None
            )
        )

    def list_registries(self) -> list[RegistryInfo]:
        def work(s: Session) -> list[RegistryInfo]:
            rows = s.scalars(sa.select(RegistryRow).order_by(RegistryRow.name))
            return [_registry_info(s, r) for r in rows]

        return self._read(work)

    def update_registry(
        self,
        name: str,
        *,
        description: str | None = None,
        protected_aliases: Sequence[str] | None = None,
        user: str | None = None,
    ) -> RegistryInfo:
        check_registry_name(name)
        if description is not None:
            check_str("description", description)
        protected = check_aliases(protected_aliases) if protected_aliases is not None else None

        def work(s: Session) -> RegistryInfo:
            row = find_registry(s, name, lock=True)
            before = {"description": row.description, "protected_aliases": row.protected_aliases}
            if description is not None:
                row.description = description
            if protected is not None:
                row.protected_aliases = sorted(protected)
            after = {"description": row.description, "protected_aliases": row.protected_aliases}
            if after != before:
                record(s, "registry.update", name, before, after, registry=name, user=user)
            s.flush()
            return _registry_info(s, row)

        return self._write(work)

    def registry_members(self, name: str) -> dict[str, str]:
        check_registry_name(name)

        def work(s: Session) -> dict[str, str]:
            row = find_registry(s, name)
            rows = s.execute(
                sa.select(RegistryMember.user, RegistryMember.role)
                .where(RegistryMember.registry_id == row.id)
                .order_by(RegistryMember.user)
            )
            return {member: role for member, role in rows}

        return self._read(work)

    def registry_role(self, name: str, member: str) -> str | None:
        """``member``'s role in the registry (None: none)."""
        check_registry_name(name)

        def work(s: Session) -> str | None:
            row = find_registry(s, name)
            return s.scalar(
                sa.select(RegistryMember.role).where(
                    RegistryMember.registry_id == row.id, RegistryMember.user == member
                )
            )

        return self._read(work)

    def set_registry_member(
        self, name: str, member: str, role: str | None, *, user: str | None = None
    ) -> None:
        """Give ``member`` a role in the registry (None removes them)."""
        check_registry_name(name)
        check_str("member", member)
        if role is not None:
            check_role(role)

        def work(s: Session) -> None:
            row = find_registry(s, name, lock=True)
            current = s.get(RegistryMember, (row.id, member))
            before = current.role if current is not None else None
            if role is None:
                if current is not None:
                    s.delete(current)
            elif current is None:
                s.add(RegistryMember(registry_id=row.id, user=member, role=role))
            else:
                current.role = role
            if before != role:
                record(
                    s,
                    "registry.role",
                    f"{name}:{member}",
                    {"role": before},
                    {"role": role},
                    registry=name,
                    user=user,
                )

        self._write(work)

    # --- links -------------------------------------------------------------------------------

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
        """Link a version into ``registry/collection`` (created on first link, with the
        version's type) without copying bytes. A version already linked there keeps its
        number; the aliases are applied to it. ``allow_protected=False`` refuses to set or move
        the registry's protected aliases (PermissionDeniedError; nothing changes)."""
        check_registry_name(registry)
        check_artifact_name(collection)
        want = check_aliases(aliases)

        def work(s: Session) -> LinkInfo:
            if run_id is not None:
                find_run(s, run_id)
            reg = find_registry(s, registry)
            version = find_version(s, version_id)
            if version.state != COMMITTED:
                raise StateError(f"version {version.id} is deleted and cannot be linked")
            art_type = s.execute(
                sa.select(Artifact.type).where(Artifact.id == version.artifact_id)
            ).scalar_one()
            now = utcnow()
            query = sa.select(Collection).where(
                Collection.registry_id == reg.id, Collection.name == collection
            )
            coll = s.scalars(query.with_for_update()).one_or_none()
            if coll is None:
                coll = Collection(
                    registry_id=reg.id,
                    name=collection,
                    type=art_type,
                    description="",
                    tags=[],
                    created_at=now,
                    updated_at=now,
                )
                s.add(coll)
                s.flush()
                _history(s, coll, "created", now, user, run_id, new={"type": art_type})
            elif coll.type != art_type:
                raise InvalidNameError(
                    f"collection {registry}/{collection} holds {coll.type!r} versions, not "
                    f"{art_type!r}: link it into another collection"
                )
            link = s.scalars(_live(coll).where(CollectionLink.version_id == version.id)).first()
            if link is None:
                last = s.scalar(
                    sa.select(sa.func.max(CollectionLink.number)).where(
                        CollectionLink.collection_id == coll.id
                    )
                )
                link = CollectionLink(
                    collection_id=coll.id,
                    number=0 if last is None else last + 1,
                    version_id=version.id,
                    linked_at=now,
                    unlinked_at=None,
                    user=user,
                    run_id=run_id,
                )
                s.add(link)
                s.flush()
                label = version_infos(s, [version])[0].qualified_name
                _history(s, coll, "linked", now, user, run_id, link=link, new=label)
                coll.updated_at = now
                record(
                    s,
                    "collection.link",
                    f"{registry}/{collection}:v{link.number}",
                    None,
                    {"version": label},
                    registry=registry,
                    user=user,
                )
            changes = _move_aliases(
                s, reg, coll, link, want, (), allow_protected=allow_protected,
                user=user, run_id=run_id, at=now,
            )  # fmt: skip
            _audit_aliases(s, registry, collection, changes, user)
            return link_infos(s, [link])[0]

        return self._write(work)

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
        """Unlink a collection version (recorded; its number is not reused; its aliases go)."""
        check_registry_name(registry)
        check_artifact_name(collection)
        _check_ref(ref)

        def work(s: Session) -> LinkInfo:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection, lock=True)
            link = _find_link(s, reg, coll, ref)
            now = utcnow()
            held = list(
                s.scalars(
                    sa.select(CollectionAlias.alias).where(CollectionAlias.link_id == link.id)
                )
            )
            changes = _move_aliases(
                s, reg, coll, link, (), held, allow_protected=allow_protected,
                user=user, run_id=run_id, at=now,
            )  # fmt: skip
            link.unlinked_at = now
            coll.updated_at = now
            _history(s, coll, "unlinked", now, user, run_id, link=link, old=f"v{link.number}")
            _audit_aliases(s, registry, collection, changes, user)
            record(
                s,
                "collection.unlink",
                f"{registry}/{collection}:v{link.number}",
                {"version_id": link.version_id, "aliases": held},
                None,
                registry=registry,
                user=user,
            )
            s.flush()
            return link_infos(s, [link])[0]

        return self._write(work)

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
        """Add aliases to a collection version (moving them from others) and remove some, in
        one transaction."""
        check_registry_name(registry)
        check_artifact_name(collection)
        _check_ref(ref)
        adding, removing = check_aliases(add), check_aliases(remove)

        def work(s: Session) -> LinkInfo:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection, lock=True)
            link = _find_link(s, reg, coll, ref)
            changes = _move_aliases(
                s, reg, coll, link, adding, removing, allow_protected=allow_protected,
                user=user, run_id=run_id, at=utcnow(),
            )  # fmt: skip
            _audit_aliases(s, registry, collection, changes, user)
            return link_infos(s, [link])[0]

        return self._write(work)

    def resolve_link(
        self, registry: str, collection: str, ref: str = "latest", *, at: datetime | None = None
    ) -> LinkInfo:
        """The collection version ``ref`` names ('latest', 'vN', an alias or a digest); with
        ``at``, the one it named at that time (from the history)."""
        check_registry_name(registry)
        check_artifact_name(collection)
        _check_ref(ref)
        when = _aware(at) if at is not None else None

        def work(s: Session) -> LinkInfo:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection)
            if when is None:
                link = _find_link(s, reg, coll, ref)
            else:
                link = _find_link_at(s, reg, coll, ref, when)
            info = link_infos(s, [link])[0]
            if when is not None:
                info.aliases = _aliases_at(s, coll, link, when)
            return info

        return self._read(work)

    def list_collections(
        self, registry: str, *, limit: int = 100, offset: int = 0
    ) -> list[CollectionInfo]:
        check_registry_name(registry)
        check_page(limit, offset)

        def work(s: Session) -> list[CollectionInfo]:
            reg = find_registry(s, registry)
            rows = s.scalars(
                sa.select(Collection)
                .where(Collection.registry_id == reg.id)
                .order_by(Collection.name)
                .limit(limit)
                .offset(offset)
            )
            return [_collection_info(s, reg, c) for c in rows]

        return self._read(work)

    def get_collection(self, registry: str, collection: str) -> CollectionInfo:
        check_registry_name(registry)
        check_artifact_name(collection)

        def work(s: Session) -> CollectionInfo:
            reg = find_registry(s, registry)
            return _collection_info(s, reg, _collection(s, reg, collection))

        return self._read(work)

    def list_links(
        self, registry: str, collection: str, *, limit: int = 100, offset: int = 0
    ) -> list[LinkInfo]:
        """Linked versions, newest first."""
        check_registry_name(registry)
        check_artifact_name(collection)
        check_page(limit, offset)

        def work(s: Session) -> list[LinkInfo]:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection)
            links = s.scalars(
                _live(coll).order_by(CollectionLink.number.desc()).limit(limit).offset(offset)
            ).all()
            return link_infos(s, links)

        return self._read(work)

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
        check_registry_name(registry)
        check_artifact_name(collection)
        if description is not None:
            check_str("description", description)
        want_tags = check_tags(tags) if tags is not None else None

        def work(s: Session) -> CollectionInfo:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection, lock=True)
            now = utcnow()
            target = f"{registry}/{collection}"
            if description is not None and description != coll.description:
                _history(s, coll, "description", now, user, run_id, old=coll.description,
                         new=description)  # fmt: skip
                record(s, "collection.description", target, coll.description, description,
                       registry=registry, user=user)  # fmt: skip
                coll.description = description
                coll.updated_at = now
            if want_tags is not None and sorted(want_tags) != sorted(coll.tags):
                _history(s, coll, "tags", now, user, run_id, old=list(coll.tags),
                         new=sorted(want_tags))  # fmt: skip
                record(s, "collection.tags", target, list(coll.tags), sorted(want_tags),
                       registry=registry, user=user)  # fmt: skip
                coll.tags = sorted(want_tags)
                coll.updated_at = now
            s.flush()
            return _collection_info(s, reg, coll)

        return self._write(work)

    def collection_history(self, registry: str, collection: str) -> list[CollectionHistoryEntry]:
        """Oldest first."""
        check_registry_name(registry)
        check_artifact_name(collection)

        def work(s: Session) -> list[CollectionHistoryEntry]:
            reg = find_registry(s, registry)
            coll = _collection(s, reg, collection)
            rows = s.execute(
                sa.select(CollectionHistory, CollectionLink.number)
                .outerjoin(CollectionLink, CollectionLink.id == CollectionHistory.link_id)
                .where(CollectionHistory.collection_id == coll.id)
                .order_by(CollectionHistory.id)
            )
            return [
                CollectionHistoryEntry(
                    field=h.field,
                    at=h.at,
                    version=number,
                    alias=h.alias,
                    old=h.old,
                    new=h.new,
                    user=h.user,
                    run_id=h.run_id,
                )
                for h, number in rows
            ]

        return self._read(work)

    def links_of(self, version_id: int) -> list[LinkInfo]:
        """Where a version is linked now (every registry and collection)."""

        def work(s: Session) -> list[LinkInfo]:
            version = find_version(s, version_id)
            links = s.scalars(
                sa.select(CollectionLink)
                .where(
                    CollectionLink.version_id == version.id,
                    CollectionLink.unlinked_at.is_(None),
                )
                .order_by(CollectionLink.id)
            ).all()
            return link_infos(s, links)

        return self._read(work)

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
        """Linked versions of a registry (or one collection) matching ``filters``; see
        `cairn.service.search`. ``version`` means the collection's vN, ``aliases`` the
        collection's aliases."""
        check_registry_name(registry)
        if collection is not None:
            check_artifact_name(collection)
        check_page(limit, offset)
        node = parse_filters(filters)
        keys = parse_order(order)

        def work(s: Session) -> list[LinkInfo]:
            reg = find_registry(s, registry)
            columns = {
                "type": Artifact.type,
                "name": Artifact.name,
                "project": Project.name,
                "version": CollectionLink.number,
                "created_at": Version.created_at,
                "run": Version.run_id,
                "description": Version.description,
                "size": Version.size,
                "file_count": Version.file_count,
                "digest": Version.digest,
            }

            def has_alias(names: tuple[str, ...]) -> sa.ColumnElement[bool]:
                return sa.exists().where(
                    CollectionAlias.link_id == CollectionLink.id, CollectionAlias.alias.in_(names)
                )

            compiler = Compiler(
                s.get_bind().dialect.name, columns, {"tags": has_tag, "aliases": has_alias}
            )
            query = (
                sa.select(CollectionLink)
                .join(Collection, Collection.id == CollectionLink.collection_id)
                .join(Version, Version.id == CollectionLink.version_id)
                .join(Artifact, Artifact.id == Version.artifact_id)
                .join(Project, Project.id == Artifact.project_id)
                .where(Collection.registry_id == reg.id, CollectionLink.unlinked_at.is_(None))
            )
            if collection is not None:
                coll = _collection(s, reg, collection)
                query = query.where(Collection.id == coll.id)
            if node is not None:
                query = query.where(compiler.condition(node))
            ordering = compiler.order_by(keys) or [CollectionLink.linked_at.desc()]
            query = query.order_by(*ordering, CollectionLink.id.desc())
            links = s.scalars(query.limit(limit).offset(offset)).all()
            return link_infos(s, links)

        return self._read(work)


def _aliases_at(s: Session, coll: Collection, link: CollectionLink, at: datetime) -> list[str]:
    """The aliases ``link`` held at time ``at`` (replayed from the history)."""
    held: dict[str, int | None] = {}
    for alias, link_id in s.execute(
        sa.select(CollectionHistory.alias, CollectionHistory.link_id)
        .where(
            CollectionHistory.collection_id == coll.id,
            CollectionHistory.field == "alias",
            CollectionHistory.at <= at,
        )
        .order_by(CollectionHistory.id)
    ):
        if alias is not None:
            held[alias] = link_id
    return sorted(a for a, lid in held.items() if lid == link.id)


def _audit_aliases(
    s: Session,
    registry: str,
    collection: str,
    changes: list[tuple[str, int | None, int | None]],
    user: str | None,
) -> None:
    collection_alias_events(s, registry, collection, changes, user)  # for the registry's webhooks
    for alias, old, new in changes:
        record(
            s,
            "collection.alias",
            f"{registry}/{collection}:{alias}",
            None if old is None else f"v{old}",
            None if new is None else f"v{new}",
            registry=registry,
            user=user,
        )


__all__ = ["REGISTRY_ROLES", "RegistriesMixin", "check_role", "role_at_least"]
