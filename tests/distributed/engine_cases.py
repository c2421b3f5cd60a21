"""What every engine must do (tests/distributed/test_dask.py and test_ray.py run these on a real
local cluster of two worker processes): a folder logged by the workers is the version one
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
