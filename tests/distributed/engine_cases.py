"""What every engine must do (tests/distributed/test_dask.py, test_ray.py and test_processes.py run
these on two real worker processes): a folder logged by the workers is the version one
process logs (same digest), downloads back on the workers, and conflicts are named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import cairn
import cairn.distributed
from cairn.errors import PartConflictError


def make_folder(root: Path) -> Path:
    """A small tree: nested folders, a wide folder, an empty file and a chunked file."""
    folder = root / "dataset"
    for i in range(30):
        path = folder / f"split-{i % 3}" / f"shard-{i // 10}" / f"item-{i:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"item {i}\n".encode() * (i + 1))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "big.bin").write_bytes(os.urandom(5 << 20))
    return folder


def log_dir_equals_single_process(tmp_path: Path, options: dict[str, Any]) -> None:
    folder = make_folder(tmp_path)
    with cairn.init(project="p", job_type="build") as run:
        single = run.log_artifact(folder, name="single")
        art = cairn.distributed.log_dir(
            folder, "data", shards=5, metadata={"n": 32}, distributed_id="build-1", **options
        )
        assert art.digest == single.digest
        assert art.file_count == 32 and art.size == single.size
        assert art.metadata == {"n": 32} and art.version == "v0"
        producer = art.logged_by()
        assert producer is not None and producer.id == run.id
        assert run.artifact_parts("data", "build-1") == []  # finished with the version
        # the reverse: each worker writes its shard of the files
        out = cairn.distributed.download(art, tmp_path / "out", shards=3, **options)
        art.verify(out)
        # logging the same folder again makes no new version
        again = cairn.distributed.log_dir(folder, "data", **options)
        assert again.version == "v0"


def files_and_references(tmp_path: Path, options: dict[str, Any]) -> None:
    folder = make_folder(tmp_path)
    files: list[Any] = sorted(str(p) for p in folder.rglob("*.txt"))
    files.append(folder.as_uri() + "/big.bin")  # a reference, kept where it is
    with cairn.init(project="p"):
        art = cairn.distributed.log_files(files, "mixed", root=folder, shards=4, **options)
    paths = [f.path for f in art.files()]
    assert len(paths) == 32 and "big.bin" in paths and "split-0/shard-0/item-000.txt" in paths
    assert art.get_entry("big.bin").ref is not None


def conflicting_paths_are_named(tmp_path: Path, options: dict[str, Any]) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    with cairn.init(project="p") as run:
        with pytest.raises(PartConflictError, match=r"'same\.txt' has different content"):
            cairn.distributed.log_files(
                [(a, "same.txt"), (b, "same.txt")],
                "clash",
                shards=2,
                distributed_id="clash-1",
                **options,
            )
        # nothing committed: the parts wait (for a fix, or for gc)
        assert [p.part for p in run.artifact_parts("clash", "clash-1")] == ["0", "1"]


class _Counting:
    """The engine the options name, counting how many calls it has drawn from the driver and
    not yet answered (the driver makes a shard's file list only when it is drawn)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.most_unanswered = 0
        self.answered = 0

    def workers(self) -> int:
        return int(self.inner.workers())

    def map(self, fn: Any, calls: Any) -> Any:
        drawn = 0

        def counted() -> Any:
            nonlocal drawn
            for call in calls:
                drawn += 1
                self.most_unanswered = max(self.most_unanswered, drawn - self.answered)
                yield call

        for i, result in self.inner.map(fn, counted()):
            self.answered += 1
            yield i, result


def many_shards_are_cut_as_the_engine_asks(
    tmp_path: Path, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder cut into many more shards than the cluster runs at once: the driver hands the
    engine a shard only when a worker is about to want one, and the version is the same."""
    from cairn.distributed import driver, engines

    folder = tmp_path / "wide"
    for i in range(240):
        path = folder / f"part-{i // 50}" / f"{i:04}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"row {i}\n".encode() * (i % 7 + 1))
    monkeypatch.setattr(driver, "SHARD_FILES", 10)  # as 50,000 files a shard at scale
    with cairn.init(project="p") as run:
        single = run.log_artifact(folder, name="single")
        engine = _Counting(cairn.distributed.pick_engine(**options))
        art = cairn.distributed.log_dir(folder, "wide", engine=engine, distributed_id="w-1")
        assert art.digest == single.digest and art.file_count == 240
        assert engine.answered == 24  # 240 files, 10 a shard
        # the next shard is drawn as a result comes back, before it is handed over: one more
        # than the window can be drawn and unanswered at that moment
        assert engine.most_unanswered <= engines.window(engine.workers()) + 1
        assert run.artifact_parts("wide", "w-1") == []
        # a download is cut the same way: only each shard's first and last path travel
        engine = _Counting(cairn.distributed.pick_engine(**options))
        out = cairn.distributed.download(art, tmp_path / "out", engine=engine)
        assert engine.answered == 24
        assert engine.most_unanswered <= engines.window(engine.workers()) + 1
        art.verify(out)
        assert (Path(out) / "part-4" / "0239.txt").read_bytes() == b"row 239\n" * (239 % 7 + 1)


def sleep_then_mark(i: int, folder: str) -> int:
    """A task that takes a while, then leaves a mark that it ran."""
    import os
    import time

    time.sleep(1.5)
    with open(os.path.join(folder, f"done-{i}"), "w"):
        pass
    return i


def a_failing_stream_of_calls_cancels_what_it_submitted(
    tmp_path: Path, options: dict[str, Any], task: Any = None
) -> None:
    """The driver makes the calls as the engine asks for them, and making one can fail (the
    walk meets a folder it cannot read): the error reaches the caller, and the tasks already
    submitted that have not started are cancelled rather than left to store parts.
    ``task``: `sleep_then_mark`, or a copy the engine can send (a local function, for engines
    that pickle functions by value)."""
    import time

    marks = tmp_path / "marks"
    marks.mkdir()

    def local(i: int, folder: str) -> int:
        import os
        import time

        time.sleep(1.5)
        with open(os.path.join(folder, f"done-{i}"), "w"):
            pass
        return i

    task = task or local
    engine = cairn.distributed.pick_engine(**options)
    workers = engine.workers()

    def calls() -> Any:
        for i in range(workers + 1):  # one more than can start: it waits for a worker
            yield (i, str(marks))
        raise OSError("the walk failed")

    with pytest.raises(OSError, match="the walk failed"):
        for _ in engine.map(task, calls()):
            pass
    time.sleep(4)  # long enough for the waiting task to have run, had it not been cancelled
    assert f"done-{workers}" not in {p.name for p in marks.iterdir()}
