"""A `cairn gc` that drops an old object while a log is reusing it must not leave a version that
points at missing data: the log notices right before committing, refuses, and the next log
stores the object again."""

from __future__ import annotations

from pathlib import Path

import pytest

import cairn
from cairn.errors import ConflictError
from cairn.sdk.backend import get_backend, reset_backends


@pytest.fixture(autouse=True)
def _fresh() -> None:
    reset_backends()


def test_a_log_whose_reused_objects_keep_being_collected_refuses_then_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "weights.bin").write_bytes(b"w" * 50_000)
    with cairn.init(project="p", job_type="t") as run:
        first = cairn.Artifact("model", type="model")
        first.add_dir(data)
        run.log_artifact(first)
    digest = first.files()[0].digest
    first.delete()  # the blob is now referenced by no live version: gc may drop it

    object_store = get_backend().object_store
    real_sync = object_store.sync

    def sync_then_collect() -> None:
        real_sync()
        object_store.delete(digest)  # what gc does to an unreferenced object: forget its index row

    (data / "config.json").write_text("{}")
    with cairn.init(project="p", job_type="t") as run:
        monkeypatch.setattr(object_store, "sync", sync_then_collect)
        second = cairn.Artifact("model", type="model")
        second.add_dir(data)
        with pytest.raises(ConflictError, match="log again"):
            run.log_artifact(second)
        monkeypatch.setattr(object_store, "sync", real_sync)
        assert [v.version for v in cairn.Api("p").artifact_versions("model")] == []

        again = cairn.Artifact("model", type="model")
        again.add_dir(data)
        run.log_artifact(again)
    out = Path(again.download(root=tmp_path / "out"))
    assert (out / "weights.bin").read_bytes() == b"w" * 50_000
    again.verify(out)


def test_a_log_stores_again_what_a_concurrent_gc_dropped_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "weights.bin").write_bytes(b"w" * 50_000)
    with cairn.init(project="p", job_type="t") as run:
        first = cairn.Artifact("model", type="model")
        first.add_dir(data)
        run.log_artifact(first)
    digest = first.files()[0].digest
    first.delete()

    object_store = get_backend().object_store
    real_sync = object_store.sync
    collected: list[str] = []

    def sync_then_collect_once() -> None:
        real_sync()
        if not collected:
            object_store.delete(digest)  # a gc drops the unreferenced blob this log is reusing
            collected.append(digest)

    (data / "config.json").write_text("{}")
    with cairn.init(project="p", job_type="t") as run:
        monkeypatch.setattr(object_store, "sync", sync_then_collect_once)
        second = cairn.Artifact("model", type="model")
        second.add_dir(data)
        run.log_artifact(second)
    assert collected == [digest]
    assert second.version == "v1"
    out = Path(second.download(root=tmp_path / "out"))
    assert (out / "weights.bin").read_bytes() == b"w" * 50_000
    second.verify(out)
