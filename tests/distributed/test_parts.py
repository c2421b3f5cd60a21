"""`run.upsert_artifact` / `run.finish_artifact`: many workers, one version (issue 13).

Each test runs embedded (SQLite, PostgreSQL) and through a server (folder store; S3 bucket with
signed URLs). Workers are separate runs here; the Dask and Ray tests use real processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cairn
from cairn.errors import InvalidInputError, MissingPartsError, PartConflictError
from cairn.sdk.backend import get_backend


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


FILES = {
    "README.md": b"the data\n",
    "train/a.txt": b"a" * 10,
    "train/b.txt": b"b" * 20,
    "train/deep/c.txt": b"c" * 30,
    "val/x.txt": b"x",
    "val/y.txt": b"y" * 5,
    "test/z.bin": os.urandom(5 << 20),  # chunked (FastCDC) file
}


def _part(tmp: Path, name: str, paths: list[str]) -> cairn.Artifact:
    """A worker's draft: some of FILES, at their paths in the version."""
    art = cairn.Artifact("data", "dataset")
    for rel in paths:
        art.add_file(tmp / "src" / rel, name=rel)
    return art


@pytest.fixture
def src(tmp_path: Path) -> Path:
    _write(tmp_path / "src", FILES)
    return tmp_path


def _single_digest(src: Path) -> str:
    with cairn.init(project="p", job_type="single") as run:
        art = run.log_artifact(src / "src", name="single", type="dataset")
        return art.digest


def test_parts_from_many_workers_make_the_version_one_process_makes(src: Path) -> None:
    shards = [
        ["README.md", "train/a.txt"],  # train/ is shared by two parts: merged
        ["train/b.txt", "train/deep/c.txt", "val/x.txt"],
        ["val/y.txt", "test/z.bin"],
    ]
    for i, shard in enumerate(shards):
        with cairn.init(project="p", job_type="worker") as worker:
            worker.upsert_artifact(_part(src, "data", shard), distributed_id="job-1", part=str(i))
    with cairn.init(project="p", job_type="driver") as run:
        arrived = [p.part for p in run.artifact_parts("data", "job-1")]
        assert arrived == ["0", "1", "2"]
        art = cairn.Artifact("data", "dataset", metadata={"rows": 7})
        done = run.finish_artifact(
            art, distributed_id="job-1", aliases=["best"], expected_parts=["0", "1", "2"]
        )
        assert run.artifact_parts("data", "job-1") == []  # finished in the same transaction
    assert done.digest == _single_digest(src)
    assert done.version == "v0" and done.file_count == len(FILES)
    assert done.size == sum(len(v) for v in FILES.values())
    assert "best" in done.aliases and done.metadata == {"rows": 7}
    producer = done.logged_by()
    assert producer is not None and producer.id == run.id
    out = Path(done.download(src / "out"))
    for rel, data in FILES.items():
        assert (out / rel).read_bytes() == data
    done.verify(out)


def test_same_path_with_different_content_is_an_error_naming_it(src: Path) -> None:
    (src / "other.txt").write_bytes(b"not a")
    with cairn.init(project="p") as run:
        one = cairn.Artifact("data", "dataset")
        one.add_file(src / "src" / "train/a.txt", name="train/a.txt")
        two = cairn.Artifact("data", "dataset")
        two.add_file(src / "other.txt", name="train/a.txt")
        run.upsert_artifact(one, distributed_id="d", part="one")
        run.upsert_artifact(two, distributed_id="d", part="two")
        with pytest.raises(PartConflictError, match=r"'train/a.txt'.*'one', 'two'") as err:
            run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="d")
        assert err.value.path == "train/a.txt" and err.value.parts == ["one", "two"]
        # nothing committed; the parts wait for a fix
        assert len(run.artifact_parts("data", "d")) == 2
        assert not cairn.Api(project="p").artifact_collection_exists("data")
        # a file where another part has a folder
        three = cairn.Artifact("data", "dataset")
        three.add_file(src / "other.txt", name="train")
        run.upsert_artifact(three, distributed_id="e", part="file")
        run.upsert_artifact(one, distributed_id="e", part="folder")
        with pytest.raises(PartConflictError, match="'train' is a folder in part"):
            run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="e")


def test_identical_files_in_two_parts_and_retried_parts_are_fine(src: Path) -> None:
    with cairn.init(project="p") as run:
        both = ["train/a.txt", "val/x.txt"]
        run.upsert_artifact(_part(src, "data", both), distributed_id="d", part="0")
        run.upsert_artifact(
            _part(src, "data", ["val/x.txt", "README.md"]), distributed_id="d", part="1"
        )
        # a retried task sends its part again: one part, not two
        run.upsert_artifact(_part(src, "data", both), distributed_id="d", part="0")
        # parts without ids are named by their content: sent twice, still one
        run.upsert_artifact(_part(src, "data", ["val/y.txt"]), distributed_id="d")
        run.upsert_artifact(_part(src, "data", ["val/y.txt"]), distributed_id="d")
        parts = run.artifact_parts("data", "d")
        assert len(parts) == 3
        # a part upserted again with other files replaces what it sent
        run.upsert_artifact(_part(src, "data", ["train/a.txt"]), distributed_id="d", part="0")
        art = run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="d")
    assert sorted(f.path for f in art.files()) == [
        "README.md",
        "train/a.txt",
        "val/x.txt",
        "val/y.txt",
    ]


def test_missing_parts_are_named_and_nothing_is_committed(src: Path) -> None:
    with cairn.init(project="p") as run:
        for i in (0, 2):
            run.upsert_artifact(
                _part(src, "data", [sorted(FILES)[i]]), distributed_id="d", part=str(i)
            )
        with pytest.raises(MissingPartsError, match=r"1 of the 3 expected parts.*'1'") as err:
            run.finish_artifact(
                cairn.Artifact("data", "dataset"),
                distributed_id="d",
                expected_parts=["0", "1", "2"],
            )
        assert err.value.missing == ["1"] and err.value.arrived == ["0", "2"]
        with pytest.raises(MissingPartsError, match="no part"):
            run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="nothing")
        # the worker that died runs again; the finish then commits all three
        run.upsert_artifact(_part(src, "data", [sorted(FILES)[1]]), distributed_id="d", part="1")
        art = run.finish_artifact(
            cairn.Artifact("data", "dataset"), distributed_id="d", expected_parts=["0", "1", "2"]
        )
        assert art.file_count == 3
        # after a finish the same id starts the next version
        run.upsert_artifact(_part(src, "data", ["val/y.txt"]), distributed_id="d", part="0")
        nxt = run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="d")
        assert nxt.version == "v1" and nxt.file_count == 1


def test_finish_adds_its_own_files_and_checks_its_arguments(src: Path) -> None:
    with cairn.init(project="p") as run:
        run.upsert_artifact(_part(src, "data", ["val/x.txt"]), distributed_id="d", part="w")
        with pytest.raises(InvalidInputError, match="distributed_id"):
            run.upsert_artifact(_part(src, "data", ["val/x.txt"]))
        with pytest.raises(InvalidInputError, match="finish_artifact"):
            run.upsert_artifact(
                _part(src, "data", ["val/x.txt"]), distributed_id="d", aliases=["best"]
            )
        with pytest.raises(cairn.errors.InvalidNameError, match="distributed id"):
            run.upsert_artifact(_part(src, "data", ["val/x.txt"]), distributed_id="a/b")
        with pytest.raises(cairn.errors.InvalidNameError, match="type"):
            run.upsert_artifact(
                cairn.Artifact("data", "model"), distributed_id="d", part="other-type"
            )
        own = _part(src, "data", ["README.md"])
        art = run.finish_artifact(own, distributed_id="d", tags=["merged"])
    assert sorted(f.path for f in art.files()) == ["README.md", "val/x.txt"]
    assert art.tags == ["merged"] and not art.is_draft


@pytest.mark.parametrize("backend_mode", ["sqlite", "postgres"])  # gc runs where the store is
def test_pending_parts_survive_gc_and_abandoned_ones_are_removed(
    src: Path, backend_mode: str
) -> None:
    from cairn.objects.gc import collect
    from cairn.service.liveness import expire_parts, live_objects

    backend = get_backend()
    registry = backend.registry

    def gc() -> int:
        report = collect(
            backend.object_store,  # type: ignore[arg-type]
            lambda: live_objects(registry),
            grace_seconds=0,
            dry_run=False,
            settle_seconds=0,
        )
        return report.objects_dropped

    with cairn.init(project="p") as run:
        run.upsert_artifact(_part(src, "data", ["train/a.txt"]), distributed_id="d", part="0")
        backend.object_store.sync()
        assert gc() == 0  # a pending part is live
        assert expire_parts(registry, 3600) == 0  # upserted just now: not abandoned
        run.upsert_artifact(_part(src, "data", ["val/x.txt"]), distributed_id="d", part="1")
        art = run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="d")
        art.verify(art.download(src / "out"))
        # a part never finished, older than the grace period, is removed; then its objects go
        run.upsert_artifact(_part(src, "data", ["val/y.txt"]), distributed_id="lost", part="0")
        assert expire_parts(registry, 3600, dry_run=True) == 0
        assert expire_parts(registry, 0, dry_run=True) == 1
        assert run.artifact_parts("data", "lost") != []
        assert expire_parts(registry, 0) == 1
        assert run.artifact_parts("data", "lost") == []
        assert gc() >= 2  # its blob and its tree
        art.verify(art.download(src / "again"))


def test_parts_made_with_add_dir_and_a_path(src: Path) -> None:
    train = cairn.Artifact("data", "dataset")
    train.add_dir(src / "src" / "train", name="train")
    rest = cairn.Artifact("data", "dataset")
    for rel in ("README.md", "val/x.txt", "val/y.txt", "test/z.bin"):
        rest.add_file(src / "src" / rel, name=rel)
    with cairn.init(project="p") as run:
        run.upsert_artifact(train, distributed_id="d", part="train")
        run.upsert_artifact(rest, distributed_id="d", part="rest")
        art = run.finish_artifact(cairn.Artifact("data", "dataset"), distributed_id="d")
    assert art.digest == _single_digest(src)
