"""Digests and deduplication: what the digest covers, identical content stores nothing, a
changed file stores only itself."""

from __future__ import annotations

from pathlib import Path

from sdk_helpers import (
    footer_bytes,
    make_tree,
    pack_files,
    snapshot,
    store_bytes,
    stored_objects,
    write,
)

import cairn
from cairn.core.digest import hash_bytes
from cairn.objects import tree
from cairn.sdk.backend import get_backend


def _log_dir(folder: Path, name: str = "ds", **kwargs: object) -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset", **kwargs)  # type: ignore[arg-type]
    art.add_dir(folder)
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    return art


def test_the_digest_covers_paths_and_content_not_metadata(tmp_path: Path) -> None:
    files = {"a.csv": "1,2\n", "sub/b.csv": "3,4\n"}
    base = _log_dir(make_tree(tmp_path / "base", files), metadata={"rows": 2})

    renamed = _log_dir(
        make_tree(tmp_path / "renamed", {"a2.csv": "1,2\n", "sub/b.csv": "3,4\n"}), "renamed"
    )
    assert renamed.digest != base.digest

    moved = _log_dir(make_tree(tmp_path / "moved", {"a.csv": "1,2\n", "b.csv": "3,4\n"}), "moved")
    assert moved.digest != base.digest

    edited = _log_dir(make_tree(tmp_path / "edited", {**files, "a.csv": "1,3\n"}), "edited")
    assert edited.digest != base.digest

    # same files, other metadata, description, tags and artifact name: same digest
    same = _log_dir(
        make_tree(tmp_path / "same", files),
        "same",
        metadata={"rows": 999, "note": "other"},
        description="another description",
    )
    assert same.digest == base.digest


def test_logging_identical_content_makes_no_version_and_stores_nothing(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "data", {"a.csv": "1\n", "b/c.csv": "2\n", "d.bin": b"\x00" * 99})
    first = cairn.Artifact("ds", type="dataset", metadata={"pass": 1})
    first.add_dir(folder)
    with first.new_file("notes.txt") as f:
        f.write("written in place")
    with cairn.init(project="proj") as run:
        run.log_artifact(first, aliases=["first"])
    before_objects, before_packs = snapshot()
    before_bytes = store_bytes()

    # the same files again (the new_file a fresh file Cairn has never seen), new metadata
    again = cairn.Artifact("ds", type="dataset", metadata={"pass": 2})
    again.add_dir(folder)
    with again.new_file("notes.txt") as f:
        f.write("written in place")
    with cairn.init(project="proj") as run:
        run.log_artifact(again, aliases=["again"], tags=["rerun"])

    assert again.version == "v0"
    assert again.digest == first.digest
    assert again.aliases == ["latest", "again", "first"]
    assert again.tags == ["rerun"]
    assert again.metadata == {"pass": 1}  # the existing version is unchanged
    assert snapshot() == (before_objects, before_packs)
    assert store_bytes() == before_bytes
    versions = cairn.Api("proj").artifact_versions("ds")
    assert [(v.version, v.aliases) for v in versions] == [("v0", ["latest", "again", "first"])]
    history = versions[0].history()
    assert [(h.field, h.old, h.new, h.run_id) for h in history[1:]] == [
        ("relogged", None, {"run": run.id, "digest": first.digest}, run.id),
        ("aliases", ["first"], ["again", "first"], run.id),
        ("tags", [], ["rerun"], run.id),
    ]


def test_a_changed_file_stores_only_that_file(tmp_path: Path) -> None:
    files = {f"part-{i}.csv": f"row {i}\n" * 50 for i in range(5)}
    folder = make_tree(tmp_path / "data", files)
    v0 = _log_dir(folder)
    before = stored_objects()
    before_bytes, before_packs = store_bytes(), set(pack_files())

    new_content = b"row 2 was edited\n" * 50
    write(folder / "part-2.csv", new_content)
    v1 = _log_dir(folder)

    assert v1.version == "v1"
    new = stored_objects() - before
    # one blob for the changed file and the new root tree: nothing else was written
    assert new == {hash_bytes(new_content), v1.digest}
    root_tree = get_backend().object_store.get(v1.digest)
    footers = footer_bytes(set(pack_files()) - before_packs)  # each new pack lists its objects
    assert store_bytes() - before_bytes == len(new_content) + len(root_tree) + footers
    assert v0.digest in stored_objects()


def test_a_changed_file_in_a_subfolder_rewrites_only_its_path_to_the_root(tmp_path: Path) -> None:
    folder = make_tree(
        tmp_path / "data",
        {"top.txt": "top", "a/one.txt": "one", "a/deep/two.txt": "two", "b/three.txt": "three"},
    )
    _log_dir(folder)
    before = stored_objects()
    write(folder / "a" / "deep" / "two.txt", "TWO")
    v1 = _log_dir(folder)

    def load(digest: str) -> bytes:
        return get_backend().object_store.get(digest)

    a = tree.lookup(v1.digest, "a", load)
    deep = tree.lookup(v1.digest, "a/deep", load)
    assert a is not None and deep is not None
    assert stored_objects() - before == {hash_bytes(b"TWO"), deep.digest, a.digest, v1.digest}


def test_the_same_content_in_another_artifact_stores_no_new_bytes(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "data", {"x.bin": b"x" * 1000, "y.bin": b"y" * 1000})
    first = _log_dir(folder, "first")
    before = snapshot()
    second = _log_dir(folder, "second")
    assert (second.name, second.version, second.digest) == ("second", "v0", first.digest)
    assert snapshot() == before
    assert pack_files("tmp") == {}
