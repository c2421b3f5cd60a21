"""The filter language of `cairn.service.search` as SQL: SQLite's JSON functions
(``json_extract``/``json_type``) or PostgreSQL's JSONB (``jsonb_extract_path``/``jsonb_typeof``
on the generated, GIN-indexed ``versions.metadata_search`` column; an equality also asks
``metadata_search @> {...}`` so the index can answer it).

Every key and value is a bound parameter; nothing from a filter is ever spliced into SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from cairn.core.names import check_artifact_name, check_project
from cairn.core.records import VersionInfo
from cairn.errors import InvalidInputError
from cairn.metadata.tables import (
    PG_METADATA_SEARCH,
    Alias,
    Artifact,
    Project,
    Version,
    VersionTag,
)
from cairn.service.search import And, Cond, Node, Not, Or, OrderKey, parse_filters, parse_order
from cairn.service.sql.artifacts import find_artifact, version_infos
from cairn.service.sql.common import COMMITTED, SqlBase, escape_like
from cairn.service.sql.projects import find_project
from cairn.service.validate import check_page

# `versions` is never aliased in the queries that compile filters (search_versions and the
# registry's search_links join the table itself), so the qualified name is safe to render.
PG_DOC: sa.ColumnElement[Any] = sa.literal_column(f"versions.{PG_METADATA_SEARCH}", JSONB)

SetMatch = Callable[[tuple[str, ...]], sa.ColumnElement[bool]]
"""``names -> condition`` "the row has at least one of these names" (tags, aliases)."""


class Compiler:
    def __init__(self, dialect: str, columns: Mapping[str, Any], sets: dict[str, SetMatch]) -> None:
        self.pg = dialect == "postgresql"
        self.columns = columns
        self.sets = sets

    # --- metadata values -------------------------------------------------------------------------

    def _json(self, keys: tuple[str, ...]) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        """(the value at ``keys``, its JSON kind) in this dialect."""
        if self.pg:
            value = sa.func.jsonb_extract_path(PG_DOC, *[sa.literal(k, sa.Text) for k in keys])
            return value, sa.func.jsonb_typeof(value)
        path = sa.literal("$" + "".join(f'."{k}"' for k in keys), sa.Text)
        return sa.func.json_extract(Version.meta, path), sa.func.json_type(Version.meta, path)

    def _kind_is(self, kind: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
        if value is None:
            return kind == "null"
        if isinstance(value, bool):
            if self.pg:
                return kind == "boolean"
            return kind == ("true" if value else "false")
        if isinstance(value, int | float):
            return kind == "number" if self.pg else kind.in_(("integer", "real"))
        return kind == ("string" if self.pg else "text")

    def _meta_compare(self, keys: tuple[str, ...], op: str, v: Any) -> sa.ColumnElement[bool]:
        value, kind = self._json(keys)
        same_kind = self._kind_is(kind, v)
        if v is None or isinstance(v, bool):
            if self.pg:
                return sa.and_(self._pg_holds(keys, v), same_kind)
            return same_kind  # SQLite's json_type already says true/false/null
        operand: Any = sa.cast(sa.literal(json.dumps(v)), JSONB) if self.pg else sa.literal(v)
        exact = sa.and_(same_kind, _apply(value, op, operand))
        if self.pg and op == "$eq":
            return sa.and_(self._pg_holds(keys, v), exact)
        return exact

    @staticmethod
    def _pg_holds(keys: tuple[str, ...], v: Any) -> sa.ColumnElement[bool]:
        """``metadata_search @> {"k1": {"k2": v}}``: true whenever the value at ``keys`` is
        ``v`` (and sometimes otherwise, e.g. an array holding ``v``, which the exact check
        beside it rules out); the GIN index answers it without reading the rows."""
        doc: Any = v
        for k in reversed(keys):
            doc = {k: doc}
        return PG_DOC.op("@>")(sa.cast(sa.literal(json.dumps(doc)), JSONB))

    def _metadata(self, c: Cond) -> sa.ColumnElement[bool]:
        if c.op == "$exists":
            _, kind = self._json(c.keys)
            return kind.is_not(None) if c.value else kind.is_(None)
        if c.op == "$contains":
            value, kind = self._json(c.keys)
            text = (
                sa.func.jsonb_extract_path_text(PG_DOC, *[sa.literal(k, sa.Text) for k in c.keys])
                if self.pg
                else value
            )
            return sa.and_(self._kind_is(kind, ""), _contains(text, c.value))
        if c.op in ("$in", "$nin"):
            anyof = sa.or_(*[self._meta_compare(c.keys, "$eq", v) for v in c.value])
            return anyof if c.op == "$in" else sa.not_(sa.func.coalesce(anyof, False))
        if c.op == "$ne":
            return sa.not_(sa.func.coalesce(self._meta_compare(c.keys, "$eq", c.value), False))
        return self._meta_compare(c.keys, c.op, c.value)

    # --- the tree --------------------------------------------------------------------------------

    def condition(self, node: Node) -> sa.ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(sa.true(), *[self.condition(p) for p in node.parts])
        if isinstance(node, Or):
            return sa.or_(sa.false(), *[self.condition(p) for p in node.parts])
        if isinstance(node, Not):
            return sa.not_(sa.func.coalesce(self.condition(node.part), False))
        return self._cond(node)

    def _cond(self, c: Cond) -> sa.ColumnElement[bool]:
        if c.field == "metadata":
            return self._metadata(c)
        if c.field in self.sets:
            has = self.sets[c.field]
            if c.op == "$eq":
                return has((c.value,))
            if c.op == "$in":
                return has(c.value)
            if c.op == "$all":
                return sa.and_(*[has((v,)) for v in c.value])
            if c.op == "$ne":
                return sa.not_(has((c.value,)))
            return sa.not_(has(c.value))  # $nin
        column = self.columns[c.field]
        if c.op == "$contains":
            return _contains(column, c.value)
        if c.op in ("$in", "$nin"):
            inside = column.in_(c.value)
            return inside if c.op == "$in" else sa.not_(sa.func.coalesce(inside, False))
        if c.op == "$ne":
            return sa.not_(sa.func.coalesce(column == c.value, False))
        return _apply(column, c.op, c.value)

    def order_by(self, keys: list[OrderKey]) -> list[sa.ColumnElement[Any]]:
        out: list[sa.ColumnElement[Any]] = []
        for k in keys:
            if k.field == "metadata":
                value, kind = self._json(k.keys)
                # missing and null values last; then by kind (string < number < boolean <
                # array < object, as PostgreSQL orders jsonb), then by value
                out.append(sa.case((kind.is_(None), 1), (kind == "null", 1), else_=0))
                rank = sa.case(
                    (kind.in_(("string", "text")), 1),
                    (kind.in_(("number", "integer", "real")), 2),
                    (kind.in_(("boolean", "true", "false")), 3),
                    (kind == "array", 4),
                    else_=5,
                )
                out.append(rank.desc() if k.descending else rank.asc())
                out.append(value.desc() if k.descending else value.asc())
            else:
                column = self.columns[k.field]
                out.append(column.desc() if k.descending else column.asc())
        return out


def _apply(left: Any, op: str, right: Any) -> sa.ColumnElement[bool]:
    if op == "$eq":
        result: sa.ColumnElement[bool] = left == right
    elif op == "$gt":
        result = left > right
    elif op == "$gte":
        result = left >= right
    elif op == "$lt":
        result = left < right
    elif op == "$lte":
        result = left <= right
    else:  # pragma: no cover - parse_filters admits no other operator here
        raise AssertionError(op)
    return result


def _contains(column: Any, text: str) -> sa.ColumnElement[bool]:
    pattern = "%" + escape_like(text.lower()) + "%"
    return sa.func.lower(column).like(sa.literal(pattern), escape="\\")


def has_tag(names: tuple[str, ...]) -> sa.ColumnElement[bool]:
    return sa.exists().where(VersionTag.version_id == Version.id, VersionTag.tag.in_(names))


class SearchMixin(SqlBase):
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
        """Live versions (of one project, or one artifact of it; of every project when
        ``project`` is None) matching ``filters``, in ``order`` (default: newest first). See
        `cairn.service.search` for the language."""
        if project is not None:
            check_project(project)
        if name is not None:
            if project is None:
                raise InvalidInputError("name= needs project= (an artifact lives in a project)")
            check_artifact_name(name)
        check_page(limit, offset)
        node = parse_filters(filters)
        keys = parse_order(order)

        def work(s: Session) -> list[VersionInfo]:
            columns = {
                "type": Artifact.type,
                "name": Artifact.name,
                "project": Project.name,
                "version": Version.version,
                "created_at": Version.created_at,
                "run": Version.run_id,
                "description": Version.description,
                "size": Version.size,
                "file_count": Version.file_count,
                "digest": Version.digest,
            }
            compiler = Compiler(
                s.get_bind().dialect.name, columns, {"tags": has_tag, "aliases": _has_alias}
            )
            query = (
                sa.select(Version)
                .join(Artifact, Artifact.id == Version.artifact_id)
                .join(Project, Project.id == Artifact.project_id)
                .where(Version.state == COMMITTED)
            )
            if project is not None:
                proj = find_project(s, project)
                query = query.where(Artifact.project_id == proj.id)
                if name is not None:
                    _, artifact = find_artifact(s, project, name)
                    query = query.where(Version.artifact_id == artifact.id)
            if node is not None:
                query = query.where(compiler.condition(node))
            ordering = compiler.order_by(keys) or [Version.created_at.desc()]
            query = query.order_by(*ordering, Version.id.desc()).limit(limit).offset(offset)
            return version_infos(s, s.scalars(query).all())

        return self._read(work)


def _has_alias(names: tuple[str, ...]) -> sa.ColumnElement[bool]:
    return sa.exists().where(Alias.version_id == Version.id, Alias.alias.in_(names))


__all__ = ["Compiler", "SearchMixin", "has_tag"]
