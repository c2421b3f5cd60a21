"""Registries, collections, links, protected aliases, as-of answers, search and the audit log,
on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cairn.core.digest import hash_bytes
from cairn.core.records import VersionInfo
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidInputError,
    InvalidNameError,
    PermissionDeniedError,
    RegistryNotFoundError,
    StateError,
)
from cairn.service.audit import Actor, acting
from cairn.service.sql import SqlRegistry

Digest = Callable[[str], str]


def commit(
    reg: SqlRegistry,
    digest: str,
    name: str = "clf",
    project: str = "team-a",
    type: str = "model",
    **kw: Any,
) -> VersionInfo:
    kw.setdefault("size", 100)
    kw.setdefault("file_count", 2)
    info, _ = reg.commit_version(project, name, type, digest=digest, **kw)
    return info


def tick() -> datetime:
    """A moment strictly between the writes before and after it."""
    time.sleep(0.02)
    at = datetime.now(UTC)
    time.sleep(0.02)
    return at


def test_link_numbers_versions_in_link_order_across_projects(
    registry: SqlRegistry, digest: Digest
) -> None:
    registry.create_registry("models", description="published models")
    a = commit(registry, digest("a"), project="team-a")
    b = commit(registry, digest("b"), project="team-b", name="other")
    l0 = registry.link_version("models", "classifier", b.id, aliases=["staging"])
    l1 = registry.link_version("models", "classifier", a.id)
    assert (l0.version, l0.target.qualified_name) == (0, "team-b/other:v0")
    assert (l1.version, l1.target.qualified_name) == (1, "team-a/clf:v0")
    assert l1.aliases == ["latest"] and l1.qualified_name == "models/classifier:v1"
    # linking again keeps the number and applies aliases; no bytes or versions are copied
    again = registry.link_version("models", "classifier", b.id, aliases=["best"])
    assert again.version == 0 and again.aliases == ["best", "staging"]
    assert registry.resolve_link("models", "classifier", "staging").target.id == b.id
    assert registry.resolve_link("models", "classifier").target.id == a.id
    assert registry.resolve_link("models", "classifier", b.digest).version == 0
    coll = registry.get_collection("models", "classifier")
    assert (coll.type, coll.version_count, coll.latest_version) == ("model", 2, 1)
    assert [c.name for c in registry.list_collections("models")] == ["classifier"]
    assert [link.version for link in registry.list_links("models", "classifier")] == [1, 0]
    assert {(x.registry, x.collection, x.version) for x in registry.links_of(b.id)} == {
        ("models", "classifier", 0)
    }
    assert registry.get_registry("models").collection_count == 1


def test_aliases_are_unique_per_collection_and_move(registry: SqlRegistry, digest: Digest) -> None:
    registry.create_registry("models")
    a, b = commit(registry, digest("a")), commit(registry, digest("b"))
    registry.link_version("models", "clf", a.id, aliases=["production"])
    registry.link_version("models", "clf", b.id, aliases=["production"])
    assert registry.resolve_link("models", "clf", "production").target.id == b.id
    assert registry.resolve_link("models", "clf", "v0").aliases == []
    moved = registry.set_link_aliases("models", "clf", "v0", add=["production"], remove=[])
    assert moved.aliases == ["production"]
    registry.set_link_aliases("models", "clf", "v0", remove=["production"])
    with pytest.raises(ArtifactNotFoundError, match="no version or alias 'production'"):
        registry.resolve_link("models", "clf", "production")
    # the project's own aliases are untouched by the collection's
    assert registry.resolve("team-a", "clf", "latest").aliases == ["latest"]


def test_unlink_is_recorded_and_numbers_are_not_reused(
    registry: SqlRegistry, digest: Digest
) -> None:
    registry.create_registry("models")
    a, b = commit(registry, digest("a")), commit(registry, digest("b"))
    registry.link_version("models", "clf", a.id, aliases=["production"])
    registry.link_version("models", "clf", b.id)
    gone = registry.unlink_version("models", "clf", "production")
    assert gone.version == 0 and gone.unlinked_at is not None
    with pytest.raises(ArtifactNotFoundError):
        registry.resolve_link("models", "clf", "v0")
    with pytest.raises(ArtifactNotFoundError):
        registry.resolve_link("models", "clf", "production")
    relinked = registry.link_version("models", "clf", a.id)
    assert relinked.version == 2
    fields = [(h.field, h.version, h.alias) for h in registry.collection_history("models", "clf")]
    assert fields == [
        ("created", None, None),
        ("linked", 0, None),
        ("alias", 0, "production"),
        ("linked", 1, None),
        ("alias", None, "production"),
        ("unlinked", 0, None),
        ("linked", 2, None),
    ]
    # the version itself still exists in its project
    assert registry.get_version(a.id).state == "committed"


def test_protected_aliases_need_the_right_to_move_them(
    registry: SqlRegistry, digest: Digest
) -> None:
    registry.create_registry("models", protected_aliases=["production"])
    a, b = commit(registry, digest("a")), commit(registry, digest("b"))
    registry.link_version("models", "clf", a.id, aliases=["production"])
    with pytest.raises(PermissionDeniedError, match="protected in registry 'models'"):
        registry.link_version("models", "clf", b.id, aliases=["production"], allow_protected=False)
    # nothing changed: the refused link was not made either
    assert [x.version for x in registry.list_links("models", "clf")] == [0]
    assert registry.resolve_link("models", "clf", "production").target.id == a.id
    registry.link_version("models", "clf", b.id, aliases=["staging"], allow_protected=False)
    for attempt in (
        lambda: registry.set_link_aliases(
            "models", "clf", "v1", add=["production"], allow_protected=False
        ),
        lambda: registry.set_link_aliases(
            "models", "clf", "v0", remove=["production"], allow_protected=False
        ),
        lambda: registry.unlink_version("models", "clf", "v0", allow_protected=False),
    ):
        with pytest.raises(PermissionDeniedError):
            attempt()
    assert registry.resolve_link("models", "clf", "production").target.id == a.id
    registry.set_link_aliases("models", "clf", "v1", add=["production"])  # a maintainer may
    assert registry.resolve_link("models", "clf", "production").target.id == b.id


def test_registry_roles_and_names(registry: SqlRegistry, digest: Digest) -> None:
    info = registry.create_registry("models", user="alice")
    assert info.created_by == "alice"
    assert registry.registry_members("models") == {"alice": "admin"}
    registry.set_registry_member("models", "bob", "member")
    registry.set_registry_member("models", "bob", "maintainer")
    assert registry.registry_role("models", "bob") == "maintainer"
    registry.set_registry_member("models", "bob", None)
    assert registry.registry_role("models", "bob") is None
    with pytest.raises(InvalidInputError, match="invalid registry role"):
        registry.set_registry_member("models", "bob", "owner")
    with pytest.raises(StateError, match="already exists"):
        registry.create_registry("models")
    commit(registry, digest("a"), project="team-a")
    with pytest.raises(InvalidNameError, match="already a project's name"):
        registry.create_registry("team-a")
    with pytest.raises(RegistryNotFoundError, match="Did you mean 'models'"):
        registry.get_registry("model")
    assert registry.is_registry("models") and not registry.is_registry("team-a")


def test_a_collection_holds_one_type(registry: SqlRegistry, digest: Digest) -> None:
    registry.create_registry("models")
    registry.link_version("models", "clf", commit(registry, digest("a")).id)
    data = commit(registry, digest("d"), name="data", type="dataset")
    with pytest.raises(InvalidNameError, match="holds 'model' versions"):
        registry.link_version("models", "clf", data.id)
    registry.delete_version(data.id)
    with pytest.raises(StateError, match="deleted"):
        registry.link_version("models", "ds", data.id)


def test_as_of_answers_across_moves_for_collections(registry: SqlRegistry, digest: Digest) -> None:
    registry.create_registry("models")
    a, b, c = (commit(registry, digest(x)) for x in "abc")
    before_any = tick()
    registry.link_version("models", "clf", a.id, aliases=["production"])
    t_a = tick()
    registry.link_version("models", "clf", b.id, aliases=["production"])
    t_b = tick()
    registry.set_link_aliases("models", "clf", "v1", remove=["production"])
    t_none = tick()
    registry.link_version("models", "clf", c.id)
    registry.unlink_version("models", "clf", "v0")
    registry.set_link_aliases("models", "clf", "v2", add=["production"])
    t_c = tick()

    def held(at: datetime, ref: str = "production") -> int:
        return registry.resolve_link("models", "clf", ref, at=at).target.id

    assert held(t_a) == a.id and held(t_b) == b.id and held(t_c) == c.id
    for at in (before_any, t_none):
        with pytest.raises(ArtifactNotFoundError, match="had no version 'production'"):
            held(at)
    assert held(t_b, "latest") == b.id and held(t_c, "latest") == c.id
    assert held(t_a, "v0") == a.id  # v0 was linked then, unlinked since
    with pytest.raises(ArtifactNotFoundError):
        held(t_c, "v0")
    assert registry.resolve_link("models", "clf", "v0", at=t_a).aliases == ["production"]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        registry.resolve_link("models", "clf", "latest", at=datetime(2026, 1, 1))


def test_as_of_answers_for_plain_artifacts(registry: SqlRegistry, digest: Digest) -> None:
    before_any = tick()
    a = commit(registry, digest("a"), aliases=["production"])
    t_a = tick()
    b = commit(registry, digest("b"))
    registry.update_version(b.id, aliases=["production"])
    t_b = tick()
    registry.update_version(b.id, aliases=[])
    t_none = tick()
    registry.update_version(a.id, aliases=["production"])
    registry.delete_version(b.id)
    t_end = tick()

    def at(when: datetime, ref: str = "production") -> int:
        return registry.resolve_at("team-a", "clf", ref, when).id

    assert at(t_a) == a.id and at(t_b) == b.id and at(t_end) == a.id
    for when in (before_any, t_none):
        with pytest.raises(ArtifactNotFoundError, match="had no version 'production'"):
            at(when)
    assert at(t_a, "latest") == a.id and at(t_b, "latest") == b.id and at(t_end, "latest") == a.id
    assert at(t_b, "v1") == b.id
    with pytest.raises(ArtifactNotFoundError):
        at(t_end, "v1")  # deleted by then


def search_fixture(registry: SqlRegistry, digest: Digest) -> list[VersionInfo]:
    run = registry.create_run("team-a")
    specs: list[dict[str, Any]] = [
        {"metadata": {"acc": 0.95, "arch": "resnet", "cfg": {"lr": 0.1}}, "tags": ["eval"]},
        {"metadata": {"acc": 0.80, "arch": "vit"}, "tags": ["eval", "big"]},
        {"metadata": {"acc": "high", "arch": "resnet"}, "tags": []},
        {"metadata": {"arch": "mlp", "ok": True}, "tags": ["big"], "run_id": run.id},
        {"metadata": {"acc": 0.91, "note": None}, "tags": ["eval"], "aliases": ["best"]},
    ]
    return [commit(registry, digest(f"s{i}"), **spec) for i, spec in enumerate(specs)]


def numbers(found: list[VersionInfo]) -> list[int]:
    return [v.version for v in found]


def test_search_filters_and_orders(registry: SqlRegistry, digest: Digest) -> None:
    vs = search_fixture(registry, digest)

    def q(filters: Any = None, order: Any = None, **kw: Any) -> list[int]:
        return numbers(
            registry.search_versions(project="team-a", filters=filters, order=order, **kw)
        )

    assert q({"metadata.acc": {"$gt": 0.9}}, "-metadata.acc") == [0, 4]
    assert q({"metadata.acc": {"$gt": 0.9}, "tags": {"$in": ["eval"]}}, "metadata.acc") == [4, 0]
    assert q({"metadata.acc": {"$gte": 0.8, "$lt": 0.95}}, "version") == [1, 4]
    assert q({"metadata.acc": "high"}) == [2]  # a string is never "greater than 0.9"
    assert q({"metadata.arch": {"$in": ["vit", "mlp"]}}, "version") == [1, 3]
    assert q({"metadata.arch": {"$ne": "resnet"}}, "version") == [1, 3, 4]
    assert q({"metadata.cfg.lr": 0.1}) == [0]
    assert q({"metadata.ok": True}) == [3]
    assert q({"metadata.note": None}) == [4]
    assert q({"metadata.acc": {"$exists": False}}) == [3]
    assert q({"metadata.arch": {"$contains": "NET"}}, "version") == [0, 2]
    assert q({"tags": "big"}, "version") == [1, 3]
    assert q({"tags": {"$all": ["eval", "big"]}}) == [1]
    assert q({"tags": {"$nin": ["eval"]}}, "version") == [2, 3]
    assert q({"aliases": "best"}) == [4]
    assert q({"run": vs[3].run_id}) == [3]
    assert q({"$or": [{"metadata.acc": {"$lt": 0.85}}, {"tags": "big"}]}, "version") == [1, 3]
    assert q({"$not": {"tags": "eval"}}, "version") == [2, 3]
    assert q({"type": "model", "version": {"$gte": 3}}, "-version") == [4, 3]
    assert q({"created_at": {"$gte": vs[3].created_at.isoformat()}}, "version") == [3, 4]
    # missing values sort last both ways; limit and offset page through
    assert q(None, "-metadata.acc") == [0, 4, 1, 2, 3]
    assert q(None, "metadata.acc") == [2, 1, 4, 0, 3]
    assert q(None, "version", limit=2, offset=1) == [1, 2]
    assert numbers(registry.search_versions(filters={"tags": "big"}, order="version")) == [1, 3]


def test_equality_matches_values_not_containers(registry: SqlRegistry, digest: Digest) -> None:
    # PostgreSQL narrows an equality with `@>` on its GIN index; arrays and objects that merely
    # hold the value, and numbers written differently, must still be told apart exactly
    commit(registry, digest("a"), metadata={"k": 5, "tags": ["x"], "d": {"e": 1}})
    commit(registry, digest("b"), metadata={"k": [5, 6], "tags": "x", "d": {"e": [1]}})
    commit(registry, digest("c"), metadata={"k": 5.0, "tags": ["x", "y"], "d": {"e": 1, "f": 2}})

    def q(filters: Any) -> list[int]:
        return numbers(registry.search_versions(project="team-a", filters=filters, order="version"))

    assert q({"metadata.k": 5}) == [0, 2]
    assert q({"metadata.k": {"$in": [5, 6]}}) == [0, 2]
    assert q({"metadata.tags": "x"}) == [1]
    assert q({"metadata.d.e": 1}) == [0, 2]
    assert q({"metadata.k": {"$ne": 5}}) == [1]


def test_search_sees_edited_metadata_and_keeps_key_order(
    registry: SqlRegistry, digest: Digest
) -> None:
    v = commit(registry, digest("a"), metadata={"zeta": 1, "alpha": "long value", "mid": None})
    assert list(registry.resolve("team-a", "clf", "v0").metadata) == ["zeta", "alpha", "mid"]
    registry.update_version(v.id, metadata={"zeta": 2, "alpha": "changed"})
    assert numbers(registry.search_versions(project="team-a", filters={"metadata.zeta": 2})) == [0]
    assert registry.search_versions(project="team-a", filters={"metadata.zeta": 1}) == []
    assert list(registry.resolve("team-a", "clf", "v0").metadata) == ["zeta", "alpha"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def filtered_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlRegistry]:
    """A registry holding one version (metadata acc 1), shared by the bad-filter cases: each
    only searches it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('filters') / 'meta.db'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    reg = SqlRegistry(url)
    commit(reg, hash_bytes(b"a"), metadata={"acc": 1})
    yield reg
    reg.close()


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"metadata.acc": {"$regex": ".*"}}, "unknown operator '\\$regex'"),
        ({"$where": "1=1"}, "unknown filter operator"),
        ({"acc": 1}, "unknown filter field 'acc'"),
        ({"metadata.a'b": 1}, None),  # a quote is refused as a key, never spliced
        ({'metadata.a"b': 1}, "invalid metadata key"),
        ({"metadata.a\\b": 1}, "invalid metadata key"),
        ({"metadata.": 1}, "invalid metadata key"),
        ({"metadata.acc": {"$gt": [1]}}, "compares with"),
        ({"metadata.acc": {"$gt": None}}, "cannot compare"),
        ({"tags": {"$gt": "a"}}, "tags takes"),
        ({"version": "3"}, "compares with a number"),
        ({"created_at": "yesterday"}, "date and time"),
        ({"metadata.acc": {"$in": []}}, "non-empty list"),
        ("metadata.acc > 0.9", "filters is a dict"),
    ],
)
def test_bad_filters_are_clear_errors(
    filtered_registry: SqlRegistry, filters: Any, message: str | None
) -> None:
    registry = filtered_registry
    if message is None:
        # a key with a single quote is legal and bound: it matches nothing, injects nothing
        assert registry.search_versions(project="team-a", filters=filters) == []
        return
    with pytest.raises(InvalidInputError, match=message):
        registry.search_versions(project="team-a", filters=filters)


@pytest.mark.parametrize(
    "value",
    [
        "x' OR '1'='1",
        "'); DROP TABLE versions; --",
        '" OR 1=1 --',
        "%",
        "_",
        "\\",
        "🙂",
    ],
)
def test_hostile_values_match_literally(registry: SqlRegistry, digest: Digest, value: str) -> None:
    commit(registry, digest("a"), metadata={"k": "plain"})
    hit = commit(registry, digest("b"), metadata={"k": value}, description=value)
    assert numbers(registry.search_versions(project="team-a", filters={"metadata.k": value})) == [
        hit.version
    ]
    found = registry.search_versions(
        project="team-a", filters={"description": {"$contains": value}}
    )
    assert numbers(found) == [hit.version]
    ordered = registry.search_versions(project="team-a", filters={"tags": value}, order="-name")
    assert ordered == []
    assert len(registry.search_versions(project="team-a")) == 2  # nothing was dropped


def test_hostile_order_is_refused(registry: SqlRegistry, digest: Digest) -> None:
    commit(registry, digest("a"))
    for order in ("version; DROP TABLE versions", '-metadata.a"b', "digest", 3):
        with pytest.raises(InvalidInputError):
            registry.search_versions(project="team-a", order=order)
    assert len(registry.search_versions(project="team-a")) == 1


def test_search_links_in_a_registry(registry: SqlRegistry, digest: Digest) -> None:
    registry.create_registry("models")
    vs = search_fixture(registry, digest)
    for v in vs:
        registry.link_version("models", "clf", v.id)
    registry.set_link_aliases("models", "clf", "v0", add=["production"])
    found = registry.search_links(
        "models", filters={"metadata.acc": {"$gt": 0.9}}, order="-metadata.acc"
    )
    assert [(x.version, x.target.id) for x in found] == [(0, vs[0].id), (4, vs[4].id)]
    assert [
        x.version for x in registry.search_links("models", filters={"aliases": "production"})
    ] == [0]
    assert registry.search_links("models", collection="clf", filters={"version": 3})[0].version == 3


def test_audit_entries_are_written_with_the_change(registry: SqlRegistry, digest: Digest) -> None:
    a = commit(registry, digest("a"))
    registry.create_registry("quiet")  # no actor: the embedded mode records nothing
    assert registry.audit_log() == []
    with acting(Actor("alice", "10.0.0.7")):
        registry.create_registry("models", protected_aliases=["production"])
        registry.link_version("models", "clf", a.id, aliases=["production"])
        with pytest.raises(PermissionDeniedError):
            registry.unlink_version("models", "clf", "v0", allow_protected=False)
        registry.set_registry_member("models", "bob", "member")
    log = registry.audit_log()
    assert [(e.action, e.target) for e in log] == [
        ("registry.create", "models"),
        ("collection.link", "models/clf:v0"),
        ("collection.alias", "models/clf:production"),
        ("registry.role", "models:bob"),
    ]
    assert {(e.user, e.address, e.registry) for e in log} == {("alice", "10.0.0.7", "models")}
    assert (log[2].before, log[2].after) == (None, "v0")
    assert [e.action for e in registry.audit_log(action="collection.")] == [
        "collection.link",
        "collection.alias",
    ]
    assert registry.audit_log(user="bob") == []
    assert len(registry.audit_log(since=log[0].at - timedelta(seconds=1), limit=2)) == 2
