"""Artifacts, versions, aliases, tags, history and deletion, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cairn.core.records import VersionInfo
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidNameError,
    NotFoundError,
    ProjectNotFoundError,
    RunNotFoundError,
    StateError,
)
from cairn.service.sql import SqlRegistry
from cairn.service.sql.history import local_identity

Digest = Callable[[str], str]


def commit(
    reg: SqlRegistry, digest: str, name: str = "ds", type: str = "dataset", **kw: Any
) -> VersionInfo:
    kw.setdefault("size", 100)
    kw.setdefault("file_count", 2)
    info, _ = reg.commit_version("proj", name, type, digest=digest, **kw)
    return info


def test_versions_are_numbered_from_zero_and_fields_round_trip(
    registry: SqlRegistry, digest: Digest
) -> None:
    big = 5 * 2**40  # sizes beyond 32 bits
    run = registry.create_run("proj")
    v0, created = registry.commit_version(
        "proj",
        "ds",
        "dataset",
        digest=digest("a"),
        size=big,
        file_count=3,
        description="first cut",
        metadata={"rows": 10, "nested": {"ok": [1, 2.5, None, True]}},
        tags=["raw", "eu"],
        run_id=run.id,
    )
    assert created
    assert (v0.version, v0.label, v0.qualified_name) == (0, "v0", "proj/ds:v0")
    assert (v0.project, v0.name, v0.type, v0.digest) == ("proj", "ds", "dataset", digest("a"))
    assert (v0.size, v0.file_count, v0.description) == (big, 3, "first cut")
    assert v0.metadata == {"rows": 10, "nested": {"ok": [1, 2.5, None, True]}}
    assert v0.tags == ["eu", "raw"]
    assert v0.aliases == ["latest"]
    assert v0.run_id == run.id
    assert v0.state == "committed"
    assert v0.created_at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - v0.created_at).total_seconds()) < 60

    v1 = commit(registry, digest("b"))
    assert v1.version == 1
    assert registry.get_version(v0.id) == VersionInfo(**{**v0.__dict__, "aliases": []})
    assert registry.get_version(v1.id).aliases == ["latest"]


def test_same_digest_makes_no_new_version_but_applies_aliases_tags_and_edge(
    registry: SqlRegistry, digest: Digest
) -> None:
    v0 = commit(registry, digest("a"), tags=["one"])
    commit(registry, digest("b"))
    run = registry.create_run("proj")
    again, created = registry.commit_version(
        "proj",
        "ds",
        "dataset",
        digest=digest("a"),
        size=1,
        file_count=1,
        aliases=["best"],
        tags=["two"],
        run_id=run.id,
    )
    assert not created
    assert again.id == v0.id and again.version == 0
    assert again.aliases == ["best"]
    assert again.tags == ["one", "two"]
    assert [v.version for v in registry.list_versions("proj", "ds")] == [1, 0]
    assert [v.id for v in registry.run_outputs(run.id)] == [v0.id]
    fields = [(h.field, h.old, h.new, h.run_id) for h in registry.history(v0.id)]
    assert fields[1:] == [
        ("relogged", None, {"run": run.id, "digest": digest("a")}, run.id),
        ("aliases", [], ["best"], run.id),
        ("tags", ["one"], ["one", "two"], run.id),
    ]


def test_type_of_existing_artifact_must_match(registry: SqlRegistry, digest: Digest) -> None:
    commit(registry, digest("a"), type="dataset")
    with pytest.raises(InvalidNameError, match=r"type 'dataset'.*type='dataset'"):
        commit(registry, digest("b"), type="model")
    assert len(registry.list_versions("proj", "ds")) == 1


def test_deleted_numbers_are_never_reused(registry: SqlRegistry, digest: Digest) -> None:
    commit(registry, digest("a"))
    v1 = commit(registry, digest("b"))
    registry.delete_version(v1.id)
    assert commit(registry, digest("c")).version == 2
    # the deleted version's digest is no longer live: logging it again makes a new version
    again, created = registry.commit_version(
        "proj", "ds", "dataset", digest=digest("b"), size=1, file_count=1
    )
    assert created and again.version == 3


def test_latest_is_the_newest_live_version(registry: SqlRegistry, digest: Digest) -> None:
    v0 = commit(registry, digest("a"))
    v1 = commit(registry, digest("b"))
    assert registry.resolve("proj", "ds").id == v1.id
    assert registry.resolve("proj", "ds", "latest").aliases == ["latest"]
    registry.delete_version(v1.id)
    latest = registry.resolve("proj", "ds")
    assert latest.id == v0.id and latest.aliases == ["latest"]
    assert registry.get_version(v1.id).aliases == []


def test_alias_moves_between_versions_with_history_on_both(
    registry: SqlRegistry, digest: Digest
) -> None:
    v0 = commit(registry, digest("a"), aliases=["best", "prod"])
    run = registry.create_run("proj")
    v1 = registry.commit_version(
        "proj",
        "ds",
        "dataset",
        digest=digest("b"),
        size=1,
        file_count=1,
        aliases=["best"],
        run_id=run.id,
    )[0]
    assert v1.aliases == ["latest", "best"]
    assert registry.get_version(v0.id).aliases == ["prod"]
    assert registry.resolve("proj", "ds", "best").id == v1.id
    old_history = registry.history(v0.id)
    assert [(h.field, h.old, h.new, h.run_id) for h in old_history[1:]] == [
        ("aliases", ["best", "prod"], ["prod"], run.id)
    ]
    assert registry.history(v1.id)[0].new["aliases"] == ["best"]

    # and back, through update_version
    registry.update_version(v0.id, aliases=["prod", "best"], user="ana")
    assert registry.resolve("proj", "ds", "best").id == v0.id
    assert registry.history(v0.id)[-1].field == "aliases"
    assert registry.history(v0.id)[-1].user == "ana"
    last = registry.history(v1.id)[-1]
    assert (last.field, last.old, last.new, last.user) == ("aliases", ["best"], [], "ana")


def test_aliases_are_per_artifact(registry: SqlRegistry, digest: Digest) -> None:
    a = commit(registry, digest("a"), name="one", aliases=["best"])
    b = commit(registry, digest("b"), name="two", aliases=["best"])
    assert registry.resolve("proj", "one", "best").id == a.id
    assert registry.resolve("proj", "two", "best").id == b.id


@pytest.mark.parametrize("alias", ["latest", "v0", "v12", "bad alias", ""])
def test_reserved_and_malformed_aliases_are_rejected(
    registry: SqlRegistry, digest: Digest, alias: str
) -> None:
    with pytest.raises(InvalidNameError):
        commit(registry, digest("a"), aliases=[alias])
    v = commit(registry, digest("b"))
    with pytest.raises(InvalidNameError):
        registry.update_version(v.id, aliases=[alias])
    assert registry.get_version(v.id).aliases == ["latest"]
    assert len(registry.list_versions("proj", "ds")) == 1


def test_resolve_by_every_kind_of_reference(registry: SqlRegistry, digest: Digest) -> None:
    v0 = commit(registry, digest("a"), aliases=["gold"])
    v1 = commit(registry, digest("b"))
    assert registry.resolve("proj", "ds").id == v1.id
    assert registry.resolve("proj", "ds", "v0").id == v0.id
    assert registry.resolve("proj", "ds", "v1").id == v1.id
    assert registry.resolve("proj", "ds", "gold").id == v0.id
    assert registry.resolve("proj", "ds", digest("a")).id == v0.id


def test_resolve_unknown_reference_says_what_exists(registry: SqlRegistry, digest: Digest) -> None:
    commit(registry, digest("a"), aliases=["gold"])
    commit(registry, digest("b"))
    with pytest.raises(ArtifactNotFoundError) as info:
        registry.resolve("proj", "ds", "v7")
    message = str(info.value)
    assert "'v7'" in message and "latest is v1" in message and "gold (v0)" in message
    with pytest.raises(ArtifactNotFoundError, match="latest is v1"):
        registry.resolve("proj", "ds", "silver")
    with pytest.raises(ArtifactNotFoundError):
        registry.resolve("proj", "ds", digest("zzz"))
    with pytest.raises(InvalidNameError):
        registry.resolve("proj", "ds", "blake3:not-hex")


def test_resolve_unknown_artifact_names_the_projects_artifacts(
    registry: SqlRegistry, digest: Digest
) -> None:
    for i in range(7):
        commit(registry, digest(str(i)), name=f"set{i}")
    with pytest.raises(ArtifactNotFoundError) as info:
        registry.resolve("proj", "sett0")
    message = str(info.value)
    assert "does not exist in project 'proj'" in message
    assert "set0, set1, set2, set3, set4 (and 2 more)" in message
    assert "Did you mean 'set0'?" in message


def test_unknown_project_is_a_project_not_found_error(
    registry: SqlRegistry, digest: Digest
) -> None:
    with pytest.raises(ProjectNotFoundError, match="no projects yet"):
        registry.resolve("nope", "ds")
    commit(registry, digest("a"))
    with pytest.raises(ProjectNotFoundError, match="Projects: proj") as info:
        registry.list_versions("nope", "ds")
    assert isinstance(info.value, NotFoundError)
    with pytest.raises(ProjectNotFoundError):
        registry.list_artifacts("nope")
    with pytest.raises(ProjectNotFoundError):
        registry.list_runs("nope")


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"score": math.nan}, "metadata['score']"),
        ({"deep": {"list": [1, math.inf]}}, "metadata['deep']['list'][1]"),
        ({"when": datetime(2024, 1, 1)}, "metadata['when']"),
        ({"s": {1, 2}}, "metadata['s']"),
        ({"obj": object()}, "metadata['obj']"),
    ],
)
def test_metadata_must_be_json(
    registry: SqlRegistry, digest: Digest, metadata: dict[str, Any], key: str
) -> None:
    with pytest.raises(InvalidMetadataError) as info:
        commit(registry, digest("a"), metadata=metadata)
    assert key in str(info.value)
    v = commit(registry, digest("b"))
    with pytest.raises(InvalidMetadataError, match=key.replace("[", r"\[").replace("]", r"\]")):
        registry.update_version(v.id, metadata=metadata)
    assert registry.get_version(v.id).metadata == {}
    with pytest.raises(ProjectNotFoundError):  # nothing was created by the failed commit
        registry.resolve("other", "ds")


def test_invalid_names_and_numbers_are_rejected(registry: SqlRegistry, digest: Digest) -> None:
    with pytest.raises(InvalidNameError):
        registry.commit_version("bad project", "ds", "dataset", digest=digest("a"), size=1,
                                file_count=1)  # fmt: skip
    with pytest.raises(InvalidNameError):
        registry.commit_version("proj", "../ds", "dataset", digest=digest("a"), size=1,
                                file_count=1)  # fmt: skip
    with pytest.raises(InvalidNameError):
        commit(registry, digest("a"), type="data set")
    with pytest.raises(InvalidNameError):
        commit(registry, digest("a"), tags=["no spaces"])
    with pytest.raises(InvalidInputError, match="digest"):
        commit(registry, "md5:abc")
    with pytest.raises(InvalidInputError, match="size"):
        commit(registry, digest("a"), size=-1)
    with pytest.raises(RunNotFoundError):
        commit(registry, digest("a"), run_id="zzzzzzzz")
    assert registry.list_projects() == []


def test_update_version_records_one_entry_per_changed_field(
    registry: SqlRegistry, digest: Digest
) -> None:
    run = registry.create_run("proj")
    v = commit(registry, digest("a"), description="d0", metadata={"a": 1}, tags=["x"])
    updated = registry.update_version(
        v.id,
        description="d1",
        metadata={"a": 2},
        aliases=["best"],
        tags=["y"],
        run_id=run.id,
        user="bo",
    )
    assert (updated.description, updated.metadata) == ("d1", {"a": 2})
    assert (updated.aliases, updated.tags) == (["latest", "best"], ["y"])
    history = registry.history(v.id)
    assert history[0].field == "created" and history[0].old is None
    assert history[0].new["version"] == 0 and history[0].new["digest"] == digest("a")
    assert [(h.field, h.old, h.new) for h in history[1:]] == [
        ("description", "d0", "d1"),
        ("metadata", {"a": 1}, {"a": 2}),
        ("aliases", [], ["best"]),
        ("tags", ["x"], ["y"]),
    ]
    assert {(h.run_id, h.user) for h in history[1:]} == {(run.id, "bo")}
    assert all(h.at.tzinfo is not None for h in history)

    # setting the same values again changes nothing and records nothing
    registry.update_version(v.id, description="d1", metadata={"a": 2}, aliases=["best"])
    assert len(registry.history(v.id)) == len(history)
    with pytest.raises(RunNotFoundError):
        registry.update_version(v.id, description="x", run_id="nosuchrn")


def test_delete_refuses_aliased_versions_unless_forced(
    registry: SqlRegistry, digest: Digest
) -> None:
    v0 = commit(registry, digest("a"), aliases=["prod"])
    commit(registry, digest("b"))
    with pytest.raises(StateError, match="force=True"):
        registry.delete_version(v0.id)
    assert registry.get_version(v0.id).state == "committed"

    registry.delete_version(v0.id, force=True, user="cy")
    gone = registry.get_version(v0.id)
    assert gone.state == "deleted" and gone.aliases == []
    assert [v.version for v in registry.list_versions("proj", "ds")] == [1]
    with pytest.raises(ArtifactNotFoundError, match="v0 was deleted"):
        registry.resolve("proj", "ds", "v0")
    with pytest.raises(ArtifactNotFoundError, match="'prod'"):
        registry.resolve("proj", "ds", "prod")
    with pytest.raises(ArtifactNotFoundError):
        registry.resolve("proj", "ds", digest("a"))
    tail = [(h.field, h.old, h.new, h.user) for h in registry.history(v0.id)[-2:]]
    assert tail == [("aliases", ["prod"], [], "cy"), ("deleted", "committed", "deleted", "cy")]
    with pytest.raises(StateError, match="deleted"):
        registry.update_version(v0.id, description="too late")
    registry.delete_version(v0.id)  # idempotent
    assert len(registry.history(v0.id)) == 3


def test_deleting_every_version_leaves_nothing_to_resolve(
    registry: SqlRegistry, digest: Digest
) -> None:
    v0 = commit(registry, digest("a"))
    registry.delete_version(v0.id)
    with pytest.raises(ArtifactNotFoundError, match="all were deleted"):
        registry.resolve("proj", "ds")
    assert registry.list_versions("proj", "ds") == []
    [info] = registry.list_artifacts("proj")
    assert (info.version_count, info.latest_version, info.latest_size) == (0, None, None)


def test_unknown_version_ids(registry: SqlRegistry) -> None:
    for call in (
        registry.get_version,
        registry.history,
        registry.delete_version,
        registry.logged_by,
        registry.used_by,
        registry.lineage,
    ):
        with pytest.raises(ArtifactNotFoundError, match="no artifact version with id 4242"):
            call(4242)


def test_list_artifacts_counts_filters_searches_and_pages(
    registry: SqlRegistry, digest: Digest
) -> None:
    commit(registry, digest("a"), name="mnist", description="Handwritten digits", size=10)
    commit(registry, digest("b"), name="mnist", size=20)
    dead = commit(registry, digest("c"), name="mnist", size=30)
    registry.delete_version(dead.id)
    commit(registry, digest("d"), name="cifar", description="tiny images 50%_off", size=7)
    commit(registry, digest("e"), name="resnet", type="model", description="a CNN")

    infos = registry.list_artifacts("proj")
    assert [i.name for i in infos] == ["cifar", "mnist", "resnet"]
    mnist = infos[1]
    assert (mnist.type, mnist.version_count, mnist.latest_version, mnist.latest_size) == (
        "dataset",
        2,
        1,
        20,
    )
    assert mnist.description == "Handwritten digits"
    assert mnist.updated_at >= mnist.created_at
    # each artifact's own newest version, whatever the others hold
    assert [(i.version_count, i.latest_version, i.latest_size) for i in infos] == [
        (1, 0, 7),
        (2, 1, 20),
        (1, 0, 100),
    ]

    assert [i.name for i in registry.list_artifacts("proj", type="model")] == ["resnet"]
    assert [i.name for i in registry.list_artifacts("proj", search="DIGITS")] == ["mnist"]
    assert [i.name for i in registry.list_artifacts("proj", search="NIS")] == ["mnist"]
    assert [i.name for i in registry.list_artifacts("proj", search="50%_")] == ["cifar"]
    assert [i.name for i in registry.list_artifacts("proj", search="%")] == ["cifar"]
    assert registry.list_artifacts("proj", search="nothing") == []
    page = registry.list_artifacts("proj", limit=2, offset=1)
    assert [i.name for i in page] == ["mnist", "resnet"]
    with pytest.raises(InvalidInputError):
        registry.list_artifacts("proj", limit=-1)


def test_list_versions_newest_first_with_paging(registry: SqlRegistry, digest: Digest) -> None:
    for i in range(5):
        commit(registry, digest(str(i)))
    assert [v.version for v in registry.list_versions("proj", "ds")] == [4, 3, 2, 1, 0]
    assert [v.version for v in registry.list_versions("proj", "ds", limit=2, offset=1)] == [3, 2]
    assert [v.aliases for v in registry.list_versions("proj", "ds", limit=2)] == [["latest"], []]
    with pytest.raises(ArtifactNotFoundError):
        registry.list_versions("proj", "other")


def test_digest_queries_see_live_versions_only(registry: SqlRegistry, digest: Digest) -> None:
    shared = digest("shared")
    a = commit(registry, shared, name="one")
    b = commit(registry, shared, name="two")
    c = commit(registry, digest("c"), name="two")
    registry.delete_version(c.id)
    assert [v.id for v in registry.versions_with_digest(shared)] == [a.id, b.id]
    assert registry.versions_with_digest(digest("c")) == []
    assert registry.all_root_digests() == [shared]
    with pytest.raises(InvalidInputError):
        registry.versions_with_digest("nope")


def test_projects_are_listed_with_counts(registry: SqlRegistry, digest: Digest) -> None:
    commit(registry, digest("a"), name="x")
    commit(registry, digest("b"), name="y")
    registry.create_run("proj")
    registry.create_run("alpha")
    projects = registry.list_projects()
    assert [(p.name, p.artifact_count, p.run_count) for p in projects] == [
        ("alpha", 0, 1),
        ("proj", 2, 1),
    ]
    assert all(p.created_at.tzinfo is not None for p in projects)


def test_records_survive_a_json_round_trip(registry: SqlRegistry, digest: Digest) -> None:
    v = commit(registry, digest("a"), metadata={"k": [1, "two"]}, aliases=["best"])
    assert VersionInfo.from_dict(v.to_dict()) == v
    [entry] = registry.history(v.id)
    assert type(entry).from_dict(entry.to_dict()) == entry


def test_atomic_alias_and_tag_operations(
    registry: SqlRegistry, digest: Callable[[str], str]
) -> None:
    v0, _ = registry.commit_version(
        "p", "data", "dataset", digest=digest("a"), size=1, file_count=1, aliases=["best"]
    )
    v1, _ = registry.commit_version(
        "p", "data", "dataset", digest=digest("b"), size=1, file_count=1
    )
    info, moved_from = registry.add_alias(v1.id, "best", user="ann")
    assert moved_from == 0 and "best" in info.aliases
    assert "best" not in registry.get_version(v0.id).aliases
    info, moved_from = registry.add_alias(v1.id, "prod")
    assert moved_from is None and sorted(info.aliases) == ["best", "latest", "prod"]
    assert registry.add_alias(v1.id, "prod")[1] is None  # already here: nothing moves
    info = registry.remove_alias(v1.id, "best")
    assert sorted(info.aliases) == ["latest", "prod"]
    with pytest.raises(ArtifactNotFoundError, match="has no alias 'best'; its aliases: prod"):
        registry.remove_alias(v1.id, "best")
    assert registry.add_tag(v1.id, "golden").tags == ["golden"]
    assert registry.add_tag(v1.id, "golden").tags == ["golden"]
    assert registry.remove_tag(v1.id, "golden").tags == []
    with pytest.raises(ArtifactNotFoundError, match="has no tag 'golden'"):
        registry.remove_tag(v1.id, "golden")
    with pytest.raises(InvalidNameError):
        registry.add_alias(v1.id, "v3")
    fields = [(h.field, h.user) for h in registry.history(v1.id)]
    # no account given: the best identity there is, this process's USER@HOST
    assert ("aliases", "ann") in fields and ("tags", local_identity()) in fields
