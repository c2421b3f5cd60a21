""" "Bytes this version added to the store" (FastAPI's TestClient): the size of the objects a
version refers to that no earlier live version of its artifact refers to, computed from the
trees, shown on the version page and the versions list, and cached."""

from __future__ import annotations

import html
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dashboard_helpers import TestClient, open_backend

import cairn
from cairn.dashboard import create_dashboard_app
from cairn.dashboard.added import AddedIndex
from cairn.objects import chunking
from cairn.sdk.backend import reset_backends

MiB = 1 << 20


class RecordingStore:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def get(self, digest: str, verify: bool = True) -> bytes:
        self.reads.append(digest)
        data: bytes = self.inner.get(digest, verify)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def fresh(cairn_env: Path) -> Iterator[Any]:
    backend = open_backend(cairn_env)
    yield backend
    backend.close()
    reset_backends()


def log(folder: Path, files: dict[str, bytes], name: str = "ckpt") -> None:
    for old in sorted(folder.rglob("*"), reverse=True) if folder.exists() else []:
        old.unlink() if old.is_file() else old.rmdir()
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    with cairn.init(project="p") as run:
        art = cairn.Artifact(name, type="model")
        art.add_dir(folder)
        run.log_artifact(art)


def visible(response: Any) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)))


def test_a_one_mib_change_in_a_big_checkpoint_adds_about_one_mib(
    fresh: Any, tmp_path: Path
) -> None:
    rng = random.Random(3)
    weights = bytearray(rng.randbytes(24 * MiB))
    log(tmp_path / "m", {"model.ckpt": bytes(weights), "config.json": b'{"layers": 12}'})
    weights[10 * MiB : 11 * MiB] = rng.randbytes(MiB)  # fine-tuned: one MiB changed
    log(tmp_path / "m", {"model.ckpt": bytes(weights), "config.json": b'{"layers": 12}'})
    index = AddedIndex()
    v0 = fresh.registry.resolve("p", "ckpt", "v0")
    v1 = fresh.registry.resolve("p", "ckpt", "v1")
    added = index.artifact(fresh.registry, fresh.object_store, "p", "ckpt")
    # v0 adds everything it holds: the content, its chunk list and the folder listing
    assert 24 * MiB < added.added[v0.id] < 24 * MiB + (64 << 10)
    # v1 adds the chunks that cover the change (content-defined: a chunk either side at most)
    assert MiB <= added.added[v1.id] <= MiB + 2 * chunking.MAX_CHUNK + (64 << 10), added.added[
        v1.id
    ]
    assert v1.size == v0.size  # what the size column says changed: nothing

    client = TestClient(create_dashboard_app(fresh))
    page = client.get("/p/p/a/ckpt/v/v1")
    shown = re.search(r'id="added-bytes" title="(\d+) bytes\. ([^"]*)">\+([^<]*) added', page.text)
    assert shown, page.text[:2000]
    assert int(shown.group(1)) == added.added[v1.id]
    assert shown.group(3) == f"{added.added[v1.id] / MiB:.1f} MiB" and shown.group(3) != "0 B"
    assert "no earlier live version of this artifact holds" in shown.group(2)
    assert f"Added to the store {shown.group(3)} ({added.added[v1.id]} bytes)" in visible(page)
    listing = visible(client.get("/p/p/a/ckpt"))
    assert "Added" in listing and f"+{shown.group(3)}" in listing and "+24.0 MiB" in listing


def test_exact_for_small_files_and_deleting_an_earlier_version(fresh: Any, tmp_path: Path) -> None:
    a, b, b2, c = b"a" * 100, b"b" * 200, b"B" * 300, b"c" * 50
    log(tmp_path / "d", {"a.txt": a, "b.txt": b}, "data")
    # c.txt and copy.txt have the same content: one object, counted once
    log(tmp_path / "d", {"a.txt": a, "b.txt": b2, "c.txt": c, "copy.txt": c}, "data")
    v0 = fresh.registry.resolve("p", "data", "v0")
    v1 = fresh.registry.resolve("p", "data", "v1")
    root0 = len(fresh.object_store.get(v0.digest))
    root1 = len(fresh.object_store.get(v1.digest))
    index = AddedIndex()
    added = index.artifact(fresh.registry, fresh.object_store, "p", "data")
    assert added.added == {v0.id: root0 + 100 + 200, v1.id: root1 + 300 + 50}
    assert added.pending == 0 and added.total == 2
    assert index.version(fresh.registry, fresh.object_store, v1).get(v1.id) == root1 + 350

    # with v0 deleted, v1 is the first version: it is charged for a.txt too
    fresh.registry.delete_version(v0.id)
    added = index.artifact(fresh.registry, fresh.object_store, "p", "data")
    assert added.added == {v1.id: root1 + 100 + 300 + 50}


def test_figures_are_cached_until_the_artifact_changes(fresh: Any, tmp_path: Path) -> None:
    for i in range(3):
        log(tmp_path / "d", {"keep.txt": b"same\n", f"new-{i}.txt": b"%d\n" % i}, "data")
    store = RecordingStore(fresh.object_store)
    client = TestClient(
        create_dashboard_app(SimpleNamespace(registry=fresh.registry, object_store=store))
    )
    assert client.get("/p/p/a/data").status_code == 200
    assert store.reads  # the trees were walked once
    store.reads.clear()
    client.get("/p/p/a/data")
    client.get("/p/p/a/data/v/v1")
    client.get("/p/p/a/data/v/v1/history")
    # the cached figures: the pages read nothing more for them (v1's overview reads nothing)
    assert store.reads == []

    # a new version: only its own tree is walked (the earlier versions' walk is continued)
    log(tmp_path / "d", {"keep.txt": b"same\n", "new-3.txt": b"3\n"}, "data")
    v3 = fresh.registry.resolve("p", "data", "v3")
    store.reads.clear()
    page = client.get("/p/p/a/data")
    others = [d for d in store.reads if d != v3.digest]
    assert store.reads[0] == v3.digest and others == [], store.reads
    assert "+" in visible(page)


def test_missing_objects_make_the_figure_unknown_not_an_error(fresh: Any) -> None:
    fresh.registry.commit_version(
        "p", "ghost", "dataset", digest="blake3:" + "1" * 64, size=5, file_count=1
    )
    client = TestClient(create_dashboard_app(fresh))
    listing = client.get("/p/p/a/ghost")
    assert listing.status_code == 200
    assert 'title="some of its objects are not in the store">?<' in listing.text
    page = client.get("/p/p/a/ghost/v/v0")
    assert page.status_code == 200 and 'id="added-bytes"' not in page.text
    assert "unknown (some of its objects are not in the store)" in visible(page)


def test_a_long_history_is_computed_a_budget_at_a_time(fresh: Any, tmp_path: Path) -> None:
    for i in range(4):
        log(tmp_path / "d", {f"f{i}.txt": b"%d\n" % i}, "data")
    index = AddedIndex()
    ids = [fresh.registry.resolve("p", "data", f"v{i}").id for i in range(4)]
    # a budget of one object read: one version per request, oldest first, each finished
    first = index.artifact(fresh.registry, fresh.object_store, "p", "data", budget=1)
    assert list(first.added) == ids[:1] and first.pending == 3 and first.total == 4
    second = index.artifact(fresh.registry, fresh.object_store, "p", "data", budget=1)
    assert list(second.added) == ids[:2] and second.pending == 2
    # a version's page computes up to that version
    v2 = fresh.registry.resolve("p", "data", "v2")
    upto = index.version(fresh.registry, fresh.object_store, v2)
    assert upto.known(v2.id) and not upto.known(ids[3])
    done = index.artifact(fresh.registry, fresh.object_store, "p", "data")
    assert list(done.added) == ids and done.pending == 0
    # the same figures as one pass
    assert (
        done.added == AddedIndex().artifact(fresh.registry, fresh.object_store, "p", "data").added
    )

    # the versions list says which figures are still to come
    from fastapi import FastAPI

    from cairn.dashboard.app import dashboard_router

    router = dashboard_router(lambda request: fresh.registry, lambda request: fresh.object_store)
    router.routes[0].site.added_index = AddedIndex(list_budget=1)  # type: ignore[attr-defined]
    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    log(tmp_path / "d", {"f4.txt": b"4\n"}, "data")
    page = client.get("/p/p/a/data").text
    assert page.count('title="not computed yet: the versions are walked oldest first') == 4
    assert "1 of 5 so far; reload to go on" in page


def test_compare_says_what_the_newer_version_added(fresh: Any, tmp_path: Path) -> None:
    rng = random.Random(5)
    weights = bytearray(rng.randbytes(8 * MiB))
    log(tmp_path / "m", {"model.ckpt": bytes(weights)})
    weights[MiB : 2 * MiB] = rng.randbytes(MiB)
    log(tmp_path / "m", {"model.ckpt": bytes(weights)})
    client = TestClient(create_dashboard_app(fresh))
    page = client.get("/p/p/a/ckpt/v/v1/compare")
    # the file's size did not change (its row says so) but v1 stored about 1 MiB anew
    assert "size 8.0 MiB → 8.0 MiB" in visible(page)
    shown = r'id="compare-added" title="(\d+) bytes[^"]*">v1 added \+([^<]*) to'
    found = re.search(shown, page.text)
    assert found and MiB <= int(found.group(1)) <= MiB + 2 * chunking.MAX_CHUNK + (64 << 10)
    # compared the other way round, no such claim
    back = client.get("/p/p/a/ckpt/v/v0/compare", params={"with": "v1"})
    assert 'id="compare-added"' not in back.text
