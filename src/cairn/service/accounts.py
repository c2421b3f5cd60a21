"""Users, API keys, project roles, and which objects each user may see.

Nothing here is cached in memory: every request reads the database, so any number of server
processes can share it and a revoked key stops working at once.

* With no user at all the server runs **open** (single-user/dev mode): every request acts as an
  anonymous administrator. Once a user exists, every request needs a key.
* A key is ``cairn_`` + 43 URL-safe characters (32 random bytes); only its SHA-256 is stored.
* Roles per project: ``read`` < ``write`` < ``admin``. Server administrators (``is_admin``) act
  as ``admin`` everywhere. A user who logs to a project that does not exist yet creates it and
  becomes its admin.
* Objects: a user may read an object held by a project they may read (``project_objects``), or
  one they uploaded themselves (``object_receipts``: they had the bytes).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cairn.core.names import check_project, has_control
from cairn.core.records import Record
from cairn.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
)
from cairn.metadata.accounts import (
    ROLES,
    ApiKey,
    DashboardSession,
    ObjectReceipt,
    ProjectMember,
    ProjectObject,
    RegistryObject,
    User,
)
from cairn.metadata.engine import transaction
from cairn.metadata.tables import (
    Artifact,
    Collection,
    CollectionLink,
    Project,
    RegistryMember,
    RegistryRow,
    Version,
)
from cairn.service.sql.audit import record

T = TypeVar("T")

KEY_PREFIX = "cairn_"
_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_RANK = {role: i for i, role in enumerate(ROLES)}
_CHUNK = 500
_STATISTICS_AFTER = 10_000  # rows inserted at once after which PostgreSQL's statistics are checked
_SHOWN = 5
# every API request runs this: built once, so SQLAlchemy does not rebuild its cache key each time
_KEY_OWNER = (
    sa.select(User.id, User.name, User.is_admin)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)
_KEY_OWNER_ROLE = sa.select(
    User.id,
    User.name,
    User.is_admin,
    sa.select(ProjectMember.role)
    .join(Project, Project.id == ProjectMember.project_id)
    .where(Project.name == sa.bindparam("project"), ProjectMember.user_id == User.id)
    .scalar_subquery(),
).where(
    User.id
    == sa.select(ApiKey.user_id)
    .where(ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None))
    .scalar_subquery()
)
_PROJECT_ROLE = (  # (project id, the user's role or None), per request on a project
    sa.select(Project.id, ProjectMember.role)
    .outerjoin(
        ProjectMember,
        sa.and_(
            ProjectMember.project_id == Project.id,
            ProjectMember.user_id == sa.bindparam("user_id"),
        ),
    )
    .where(Project.name == sa.bindparam("project"))
)


def _now() -> datetime:
    return datetime.now(UTC)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_user_name(name: object) -> str:
    if not isinstance(name, str) or not _USER_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid user name {name!r}: use 1-128 characters: letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    return str(role)


def _chunks(items: Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by their key), or anyone while the server has no users."""

    user_id: int | None
    name: str | None
    is_admin: bool
    open: bool = False
    # (project, the role there or None) read with the key, for the project the request names:
    # its role check then needs no query of its own
    project_role: tuple[str, str | None] | None = field(default=None, compare=False)

    @staticmethod
    def anonymous() -> Principal:
        return Principal(user_id=None, name=None, is_admin=True, open=True)


@dataclass
class UserInfo(Record):
    id: int
    name: str
    is_admin: bool
    created_at: datetime


@dataclass
class KeyInfo(Record):
    id: int
    user: str
    prefix: str  # the first characters of the key, to tell keys apart
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass
class MemberInfo(Record):
    project: str
    user: str
    role: str


def _user_info(u: User) -> UserInfo:
    return UserInfo(id=u.id, name=u.name, is_admin=u.is_admin, created_at=u.created_at)


MIN_PASSWORD = 12
MAX_PASSWORD = 1024


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInputError(
            f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters (a passphrase of a "
            "few words is easy to remember and hard to guess)"
        )
    return password


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id with the library's current recommended parameters


# verified against when the user is unknown, so a wrong name costs what a wrong password does
_DUMMY_HASH = (  # of a random secret nobody knows
    "$argon2id$v=19$m=65536,t=3,p=4$rlrw5NwPdfLM2Evzm"
    "eOrOg$lFOQm16SzYPVxcwWcljnEgoqG73EkgNno8Bc8X2TvlI"
)


def _insert_ignore(s: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert the rows not there yet. Executed on the session's connection as a Core
    statement on the table (an ``executemany``), not as an ORM bulk insert of the class,
    which cost three times as much per row: a version binds a row per object."""
    if not rows:
        return
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(model.__table__).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(model.__table__).on_conflict_do_nothing(), rows)


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _read(self, work: Callable[[Session], T]) -> T:
        return transaction(self.engine, work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        return transaction(self.engine, work, write=True)

    # --- users and keys ------------------------------------------------------------------------

    def has_users(self) -> bool:
        return self._read(lambda s: s.scalar(sa.select(User.id).limit(1)) is not None)

    def _user(self, s: Session, name: str) -> User:
        user = s.scalars(sa.select(User).where(User.name == name)).one_or_none()
        if user is None:
            raise NotFoundError(f"no user named {name!r}; list users with `cairn server users`")
        return user

    def create_user(self, name: str, *, admin: bool = False) -> UserInfo:
        check_user_name(name)

        def work(s: Session) -> UserInfo:
            if s.scalar(sa.select(User.id).where(User.name == name)) is not None:
                raise ConflictError(f"user {name!r} already exists; choose another name")
            user = User(name=name, is_admin=bool(admin), created_at=_now())
            s.add(user)
            s.flush()
            record(s, "user.create", name, None, {"admin": bool(admin)})
            return _user_info(user)

        return self._write(work)

    def get_user(self, name: str) -> UserInfo:
        check_user_name(name)
        return self._read(lambda s: _user_info(self._user(s, name)))

    def list_users(self) -> list[UserInfo]:
        return self._read(
            lambda s: [_user_info(u) for u in s.scalars(sa.select(User).order_by(User.name))]
        )

    def set_password(self, user: str, password: str | None) -> None:
        """Let ``user`` sign in to the dashboard with ``password`` (stored as an Argon2id
        hash; None: keys only). Ends the sessions they started with a password before."""
        check_user_name(user)
        hashed = None if password is None else _hasher().hash(check_password(password))

        def work(s: Session) -> None:
            found = self._user(s, user)
            found.password_hash = hashed
            s.execute(
                sa.update(DashboardSession)
                .where(
                    DashboardSession.user_id == found.id,
                    DashboardSession.key_id.is_(None),
                    DashboardSession.ended_at.is_(None),
                )
                .values(ended_at=_now())
            )
            record(s, "user.password", user, None, {"set": password is not None})

        self._write(work)

    def verify_password(self, user: str, password: str) -> tuple[int, str] | None:
        """(id, name) of ``user`` when ``password`` is theirs; else None (also for an unknown
        user or one without a password, after the same work, so timing tells nothing)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        row = None
        if isinstance(user, str) and 0 < len(user) <= 255:
            row = self._read(
                lambda s: s.execute(
                    sa.select(User.id, User.name, User.password_hash).where(User.name == user)
                ).one_or_none()
            )
        hasher = _hasher()
        stored = row[2] if row is not None and row[2] else _DUMMY_HASH
        try:
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row[2]:
            return None
        if hasher.check_needs_rehash(stored):
            rehashed = hasher.hash(password)
            self._write(
                lambda s: s.execute(
                    sa.update(User).where(User.id == row[0]).values(password_hash=rehashed)
                )
            )
        return row[0], row[1]

    def create_key(self, user: str, label: str = "") -> tuple[KeyInfo, str]:
        """A new key for ``user``: (its record, the secret token, shown only now)."""
        check_user_name(user)
        if not isinstance(label, str) or len(label) > 128 or has_control(label):
            raise InvalidInputError(
                "a key's label is a string of at most 128 printable characters (no newline, "
                "tab or other control character)"
            )
        token = new_token()

        def work(s: Session) -> KeyInfo:
            owner = self._user(s, user)
            key = ApiKey(
                user_id=owner.id,
                key_hash=hash_key(token),
                prefix=token[: len(KEY_PREFIX) + 6],
                label=label,
                created_at=_now(),
                revoked_at=None,
            )
            s.add(key)
            s.flush()
            made = {"id": key.id, "prefix": key.prefix, "label": key.label}
            record(s, "key.create", f"{owner.name}:{key.id}", None, made)
            return KeyInfo(key.id, owner.name, key.prefix, key.label, key.created_at)

        return self._write(work), token

    def list_keys(self, user: str) -> list[KeyInfo]:
        check_user_name(user)

        def work(s: Session) -> list[KeyInfo]:
            owner = self._user(s, user)
            keys = s.scalars(
                sa.select(ApiKey).where(ApiKey.user_id == owner.id).order_by(ApiKey.id)
            )
            return [
                KeyInfo(k.id, owner.name, k.prefix, k.label, k.created_at, k.revoked_at)
                for k in keys
            ]

        return self._read(work)

    def get_key(self, key_id: int) -> KeyInfo:
        def work(s: Session) -> KeyInfo:
            row = s.execute(
                sa.select(ApiKey, User.name)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.id == key_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no API key with id {key_id}")
            k, owner = row
            return KeyInfo(k.id, owner, k.prefix, k.label, k.created_at, k.revoked_at)

        return self._read(work)

    def revoke_key(self, key_id: int) -> KeyInfo:
        """Revoke a key (at once, for every server process). Revoking twice is harmless."""

        def work(s: Session) -> None:
            key = s.get(ApiKey, key_id)
            if key is None:
                raise NotFoundError(f"no API key with id {key_id}")
            if key.revoked_at is None:
                key.revoked_at = _now()
                owner = s.scalar(sa.select(User.name).where(User.id == key.user_id))
                record(s, "key.revoke", f"{owner}:{key.id}", "active", "revoked")

        self._write(work)
        return self.get_key(key_id)

    def authenticate(self, token: str | None, project: str | None = None) -> Principal:
        """The caller a request's key names; with ``project`` (the project the request names),
        their role there is read in the same query. Raises AuthenticationError when the server
        has users and the key is missing, unknown or revoked."""

        def work(s: Session) -> Principal:
            if token:
                key = hash_key(token)
                if project is None:
                    row = s.execute(_KEY_OWNER, {"key_hash": key}).one_or_none()
                    if row is not None:
                        return Principal(user_id=row[0], name=row[1], is_admin=row[2])
                else:
                    found = s.execute(
                        _KEY_OWNER_ROLE, {"key_hash": key, "project": project}
                    ).one_or_none()
                    if found is not None:
                        uid, name, admin, role = found
                        return Principal(uid, name, admin, project_role=(project, role))
            if s.scalar(sa.select(User.id).limit(1)) is None:
                return Principal.anonymous()
            if token:
                raise AuthenticationError(
                    "the API key is not valid (mistyped, or revoked): check CAIRN_API_KEY, or "
                    "ask an administrator for a new key"
                )
            raise AuthenticationError(
                "this server needs an API key: set CAIRN_API_KEY (an administrator creates keys "
                "with `cairn server create-key USER`)"
            )

        return self._read(work)

    # --- projects and roles ----------------------------------------------------------------------

    def _project_id(self, s: Session, project: str) -> int | None:
        return s.scalar(sa.select(Project.id).where(Project.name == project))

    def _role(
        self, s: Session, principal: Principal, project: str
    ) -> tuple[int | None, str | None]:
        """(project id or None, the principal's role or None)."""
        if principal.is_admin:
            return self._project_id(s, project), "admin"
        row = s.execute(
            _PROJECT_ROLE, {"user_id": principal.user_id, "project": project}
        ).one_or_none()
        if row is None:
            return None, None
        return row[0], row[1]

    def roles(self, principal: Principal) -> dict[str, str] | None:
        """Project name -> role for the projects the principal may see; None means every
        project (administrators)."""
        if principal.is_admin:
            return None

        def work(s: Session) -> dict[str, str]:
            rows = s.execute(
                sa.select(Project.name, ProjectMember.role)
                .join(ProjectMember, ProjectMember.project_id == Project.id)
                .where(ProjectMember.user_id == principal.user_id)
            )
            return {name: role for name, role in rows}

        return self._read(work)

    def can_read(self, principal: Principal, projects: Iterable[str]) -> set[str]:
        """Which of ``projects`` the principal may read."""
        wanted = set(projects)
        roles = self.roles(principal)
        return wanted if roles is None else wanted & roles.keys()

    def _not_visible(self, principal: Principal, project: str) -> ProjectNotFoundError:
        visible = sorted(self.roles(principal) or {})
        close = difflib.get_close_matches(project, visible, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(visible[:_SHOWN]) + (
            f" (and {len(visible) - _SHOWN} more)" if len(visible) > _SHOWN else ""
        )
        where = f" Projects you can see: {shown}." if visible else ""
        return ProjectNotFoundError(
            f"project {project!r} does not exist or you have no access to it.{hint}{where}"
        )

    def require(self, principal: Principal, project: str, need: str) -> None:
        """Raise unless the principal has at least role ``need`` in an existing project: a
        project they may not see is reported as not found (its existence is not told)."""
        if principal.is_admin:
            return
        check_project(project)
        known = principal.project_role
        if known is not None and known[0] == project:
            role = known[1]  # read with the key, a moment ago
        else:
            _, role = self._read(lambda s: self._role(s, principal, project))
        if role is None:
            raise self._not_visible(principal, project)
        if _RANK[role] < _RANK[need]:
            raise PermissionDeniedError(
                f"user {principal.name!r} has {role} access to project {project!r}; this needs "
                f"{need} access (ask one of the project's admins)"
            )

    def require_writable(self, principal: Principal, project: str) -> None:
        """Like require(project, 'write'), but a project that does not exist yet is created
        with the principal as its admin (logging to a new project makes it yours)."""
        if principal.is_admin:
            return
        check_project(project)
        known = principal.project_role
        if known is not None and known[0] == project and known[1] in ("write", "admin"):
            return  # read with the key, a moment ago

        def work(s: Session) -> str | None:
            pid, role = self._role(s, principal, project)
            if pid is None:
                pid = self._create_project(s, project)
                if pid is not None:
                    s.add(
                        ProjectMember(
                            project_id=pid,
                            user_id=principal.user_id,
                            role="admin",
                            created_at=_now(),
                        )
                    )
                    return "admin"
                _, role = self._role(s, principal, project)  # created a moment ago by another
            return role

        role = self._write(work)
        if role is None:
            raise PermissionDeniedError(
                f"project {project!r} belongs to other users and you are not a member: ask one "
                "of its admins for write access, or log to another project"
            )
        if _RANK[role] < _RANK["write"]:
            raise PermissionDeniedError(
                f"user {principal.name!r} has {role} access to project {project!r}; logging, "
                "editing and deleting need write access (ask one of the project's admins)"
            )

    def _create_project(self, s: Session, project: str) -> int | None:
        """Insert the project; its id, or None when another transaction inserted it first."""
        values = {"name": project, "created_at": _now()}
        if s.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(Project).values(values).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(Project).values(values).on_conflict_do_nothing()
        created: int | None = s.scalar(stmt.returning(Project.id))
        return created

    def create_project(self, principal: Principal, project: str) -> None:
        """Create an empty project owned (admin) by the principal; ConflictError if it exists."""
        check_project(project)

        def work(s: Session) -> None:
            pid = self._create_project(s, project)
            if pid is None:
                raise ConflictError(f"project {project!r} already exists")
            if principal.user_id is not None:
                s.add(
                    ProjectMember(
                        project_id=pid, user_id=principal.user_id, role="admin", created_at=_now()
                    )
                )

        self._write(work)

    def set_role(self, project: str, user: str, role: str, *, create: bool = False) -> MemberInfo:
        """Give ``user`` ``role`` in ``project`` (replacing their old role). ``create`` makes
        the project when it does not exist (server administrators, the CLI)."""
        check_project(project)
        check_user_name(user)
        check_role(role)

        def work(s: Session) -> MemberInfo:
            pid = self._project_id(s, project)
            if pid is None:
                if not create:
                    raise ProjectNotFoundError(f"project {project!r} does not exist")
                pid = self._create_project(s, project) or self._project_id(s, project)
            owner = self._user(s, user)
            member = s.get(ProjectMember, (pid, owner.id))
            before = member.role if member is not None else None
            if member is None:
                s.add(ProjectMember(project_id=pid, user_id=owner.id, role=role, created_at=_now()))
            else:
                member.role = role
            if before != role:
                record(s, "project.role", f"{project}:{user}", before, role, project=project)
            return MemberInfo(project, user, role)

        return self._write(work)

    def remove_member(self, project: str, user: str) -> None:
        check_project(project)
        check_user_name(user)

        def work(s: Session) -> None:
            pid = self._project_id(s, project)
            if pid is None:
                raise ProjectNotFoundError(f"project {project!r} does not exist")
            owner = self._user(s, user)
            member = s.get(ProjectMember, (pid, owner.id))
            if member is not None:
                record(s, "project.role", f"{project}:{user}", member.role, None, project=project)
            s.execute(
                sa.delete(ProjectMember).where(
                    ProjectMember.project_id == pid, ProjectMember.user_id == owner.id
                )
            )

        self._write(work)

    def members(self, project: str) -> list[MemberInfo]:
        check_project(project)

        def work(s: Session) -> list[MemberInfo]:
            pid = self._project_id(s, project)
            if pid is None:
                raise ProjectNotFoundError(f"project {project!r} does not exist")
            rows = s.execute(
                sa.select(User.name, ProjectMember.role)
                .join(ProjectMember, ProjectMember.user_id == User.id)
                .where(ProjectMember.project_id == pid)
                .order_by(User.name)
            )
            return [MemberInfo(project, name, role) for name, role in rows]

        return self._read(work)

    def project_id(self, project: str) -> int | None:
        return self._read(lambda s: self._project_id(s, project))

    # --- objects -------------------------------------------------------------------------------

    def known(self, principal: Principal, digests: Iterable[str]) -> set[str]:
        """The digests the principal may read or reference: held by a project they may read,
        by a registry they have a role in (the versions linked into it), or uploaded by them.
        Administrators know every object (the caller checks the store)."""
        wanted = sorted(set(digests))
        if principal.is_admin:
            return set(wanted)

        def work(s: Session) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(wanted):
                receipts = sa.select(ObjectReceipt.digest).where(
                    ObjectReceipt.user_id == principal.user_id, ObjectReceipt.digest.in_(chunk)
                )
                held = (
                    sa.select(ProjectObject.digest)
                    .join(
                        ProjectMember,
                        sa.and_(
                            ProjectMember.project_id == ProjectObject.project_id,
                            ProjectMember.user_id == principal.user_id,
                        ),
                    )
                    .where(ProjectObject.digest.in_(chunk))
                )
                linked = (
                    sa.select(RegistryObject.digest)
                    .join(
                        RegistryMember,
                        sa.and_(
                            RegistryMember.registry_id == RegistryObject.registry_id,
                            RegistryMember.user == principal.name,
                        ),
                    )
                    .where(RegistryObject.digest.in_(chunk))
                )
                found.update(s.scalars(sa.union(receipts, held, linked)))
            return found

        return self._read(work)

    def add_receipts(self, principal: Principal, digests: Iterable[str]) -> None:
        """Remember that the principal uploaded these objects (so they may reference them)."""
        if principal.user_id is None:
            return
        self._insert_all(ObjectReceipt, digests, user_id=principal.user_id, at=_now())

    def bound(self, project_id: int, digests: Iterable[str]) -> set[str]:
        """The digests the project already holds."""
        return self._held(ProjectObject.digest, ProjectObject.project_id == project_id, digests)

    def _held(self, column: Any, owner: sa.ColumnElement[bool], digests: Iterable[str]) -> set[str]:
        """The digests among ``digests`` in ``column``'s table on rows where ``owner`` holds."""
        wanted = sorted(set(digests))

        def work(s: Session) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(wanted):
                found.update(s.scalars(sa.select(column).where(owner, column.in_(chunk))))
            return found

        return self._read(work) if wanted else set()

    def _insert_all(self, model: Any, digests: Iterable[str], **fixed: Any) -> None:
        """Insert a row per digest (with the ``fixed`` columns) where there is none yet, all in
        one transaction, in digest order. The rows are made a thousand at a time: a bind of
        200,000 objects holds their digests, not 200,000 dictionaries."""
        ordered = sorted(set(digests))

        def work(s: Session) -> None:
            for chunk in _chunks(ordered, 1000):
                _insert_ignore(s, model, [{**fixed, "digest": d} for d in chunk])

        if ordered:
            self._write(work)
            if len(ordered) >= _STATISTICS_AFTER:
                self._refresh_statistics(model.__tablename__, len(ordered))

    def _refresh_statistics(self, table: str, inserted: int) -> None:
        """On PostgreSQL, ``ANALYZE`` a table whose statistics do not yet count as many rows as
        were just inserted (a new server's first large bind). Planned from statistics of an
        empty table, each check of which of 500 digests a project holds scanned the table or
        the whole project (26-41 ms instead of 0.9 ms): 15.7 s of checks for 200,000 objects
        instead of 2.6 s. Autovacuum would analyze it only after the commit that ends the
        bind."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.connect() as conn:
            known = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar()
            if known is not None and float(known) < inserted:
                conn.execute(sa.text(f"ANALYZE {table}"))  # a model's name, not input
                conn.commit()

    def unbound(self) -> list[tuple[str, str]]:
        """(project, root digest) of every committed version whose project does not hold its
        root: versions logged without a server (embedded mode) in a store served now. Runs'
        code diffs are left out on purpose: a digest a run names proves nothing about who had
        the bytes."""

        def work(s: Session) -> list[tuple[str, str]]:
            held = ~sa.exists().where(
                ProjectObject.project_id == Project.id, ProjectObject.digest == Version.digest
            )
            roots = (
                sa.select(Project.name, Version.digest)
                .join(Artifact, Artifact.project_id == Project.id)
                .join(Version, Version.artifact_id == Artifact.id)
                .where(Version.state == "committed", held)
                .distinct()
            )
            return sorted((p, d) for p, d in s.execute(roots))

        return self._read(work)

    def registry_id(self, registry: str) -> int | None:
        return self._read(
            lambda s: s.scalar(sa.select(RegistryRow.id).where(RegistryRow.name == registry))
        )

    def registry_bound(self, registry_id: int, digests: Iterable[str]) -> set[str]:
        """The digests the registry already holds."""
        return self._held(RegistryObject.digest, RegistryObject.registry_id == registry_id, digests)

    def bind_registry(self, registry_id: int, digests: Iterable[str]) -> None:
        """Record that the registry holds these objects (one transaction, as `bind`)."""
        self._insert_all(RegistryObject, digests, registry_id=registry_id)

    def registry_unbound(self) -> list[tuple[str, str]]:
        """(registry, root digest) of every live link whose registry does not hold the
        version's root: links made before registries held objects (migration 0011)."""

        def work(s: Session) -> list[tuple[str, str]]:
            held = ~sa.exists().where(
                RegistryObject.registry_id == RegistryRow.id,
                RegistryObject.digest == Version.digest,
            )
            roots = (
                sa.select(RegistryRow.name, Version.digest)
                .join(Collection, Collection.registry_id == RegistryRow.id)
                .join(CollectionLink, CollectionLink.collection_id == Collection.id)
                .join(Version, Version.id == CollectionLink.version_id)
                .where(CollectionLink.unlinked_at.is_(None), Version.state == "committed", held)
                .distinct()
            )
            return sorted((r, d) for r, d in s.execute(roots))

        return self._read(work)

    def bind(self, project_id: int, digests: Iterable[str]) -> None:
        """Record that the project holds these objects, all in one transaction (so a project
        that holds a tree object holds everything below it)."""
        self._insert_all(ProjectObject, digests, project_id=project_id)


__all__ = [
    "Accounts",
    "KeyInfo",
    "MemberInfo",
    "Principal",
    "UserInfo",
    "check_role",
    "check_user_name",
    "hash_key",
]
