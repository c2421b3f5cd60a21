"""A folder added whole (add_dir) is walked when the version is logged and streamed through in
batches: the version is the same as when its files are added one by one, a change that touches
a path inside the folder still behaves as before, and an interrupted log of many files leaves
what it stored for the next log to reuse."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sdk_helpers import make_tree, store_unchanged, tree_of, write

import cairn
from cairn.client import objects as client_objects
from cairn.errors import FileChangedError, InvalidPathError
from cairn.objects import ingest
from cairn.objects.packs import local as local_packs
from cairn.sdk import log_version

NAMES = st.sampled_from(["a", "b", "a.txt", "a-b", "Z", "é", "x y", "0"])
TREES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=4).map("/".join),
    st.binary(max_size=40),
    min_size=1,
    max_size=25,
)


def _consistent(files: dict[str, bytes]) -> dict[str, bytes]:
    """Drop paths that would need a file and a folder at one place."""
    out: dict[str, bytes] = {}
    for path in sorted(files, key=len):
        parts = path.split("/")
        if any("/".join(parts[:i]) in out for i in range(1, len(parts))):
            continue
        out[path] = files[path]
    return out


def _one_by_one(root: Path, name: str) -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset")
    for path in sorted(tree_of(root)):
        art.add_file(root / path, name=path)
    return art


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(files=TREES, batch=st.integers(1, 9))
def test_a_streamed_folder_is_the_version_its_files_make_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], batch: int
) -> None:
    root = make_tree(tmp_path_factory.mktemp("data"), dict(_consistent(files)))
    streamed = cairn.Artifact("streamed", type="dataset")
    streamed.add_dir(root)
    assert "draft," in repr(streamed)
    with pytest.MonkeyPatch.context() as mp, cairn.init(project="proj") as run:
        mp.setattr(log_version, "STREAM_BATCH", batch)
        run.log_artifact(streamed)
        single = _one_by_one(root, "single")
        run.log_artifact(single)
    assert streamed.digest == single.digest
    assert streamed.file_count == single.file_count == len(tree_of(root))
    assert streamed.size == single.size
    assert tree_of(streamed.download(root=tmp_path_factory.mktemp("dl"))) == tree_of(root)


def test_a_folder_next_to_single_files_and_other_folders(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"x/1.csv": "1", "x/2.csv": "2", "y.csv": "y"})
    more = make_tree(tmp_path / "more", {"m.txt": "m", "deep/er/n.txt": "n"})
    readme = write(tmp_path / "README.md", "read me")
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(data)
    art.add_dir(more, name="x/more")  # inside a folder of the first one: it is expanded
    art.add_file(readme)
    with art.new_file("zz/notes.txt") as f:
        f.write("notes")
    art.add_dir(more, name="extra")
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    assert tree_of(art.download(root=tmp_path / "dl")) == {
        "x/1.csv": b"1",
        "x/2.csv": b"2",
        "x/more/m.txt": b"m",
        "x/more/deep/er/n.txt": b"n",
        "y.csv": b"y",
        "README.md": b"read me",
        "zz/notes.txt": b"notes",
        "extra/m.txt": b"m",
        "extra/deep/er/n.txt": b"n",
    }


def test_changes_inside_a_folder_added_whole_are_checked_as_before(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"a.csv": "a", "sub/b.csv": "b"})
    other = write(tmp_path / "other.csv", "other")
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(data, name="d")
    with pytest.raises(InvalidPathError, match="two files at one path"):
        art.add_file(other, name="d/a.csv")
    with pytest.raises(InvalidPathError, match="which is a file"):
        art.add_file(other, name="d/a.csv/inner")
    with pytest.raises(InvalidPathError, match="already a folder"):
        art.add_file(other, name="d/sub")
    art.add_file(other, name="d/a.csv", overwrite=True)
    art.remove("d/sub")
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    assert tree_of(art.download(root=tmp_path / "dl")) == {"d/a.csv": b"other"}


def test_a_file_written_after_its_folder_was_added_is_refused(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"a.csv": "a", "b.csv": "b"})
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(data)
    write(data / "c.csv", "appeared after add_dir")
    with cairn.init(project="proj") as run:
        with store_unchanged(), pytest.raises(FileChangedError, match=r"c\.csv") as info:
            run.log_artifact(art)
        assert "add the folder again" in str(info.value)
        art.add_dir(data)  # added again: what is there now is logged
        run.log_artifact(art)
    assert sorted(tree_of(art.download(root=tmp_path / "dl"))) == ["a.csv", "b.csv", "c.csv"]


def test_an_interrupted_log_of_many_files_is_resumed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"f{i // 50}/{i}.bin": os.urandom(64) + str(i).encode() for i in range(400)}
    data = make_tree(tmp_path / "data", files)
    old = time.time_ns() - 60 * 10**9  # written a minute ago: the hash cache may keep them
    for path in files:
        os.utime(data / path, ns=(old, old))
    monkeypatch.setattr(log_version, "STREAM_BATCH", 50)
    monkeypatch.setattr(local_packs, "INDEX_EVERY", 100)  # embedded: indexed every 100
    monkeypatch.setattr(client_objects, "PACK_OBJECTS", 100)  # remote: sent every 100
    real = ingest.Ingestor.hash_batch
    calls = []

    def interrupted(self: ingest.Ingestor, staged: list[ingest.StagedFile]) -> object:
        calls.append(len(staged))
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C after 200 files were hashed and stored
        return real(self, staged)

    art = cairn.Artifact("many", type="dataset")
    art.add_dir(data)
    with cairn.init(project="proj") as run:
        with monkeypatch.context() as mp:
            mp.setattr(ingest.Ingestor, "hash_batch", interrupted)
            with pytest.raises(KeyboardInterrupt):
                run.log_artifact(art)
        assert art.is_draft
        run.log_artifact(art)
    # the 200 files the interrupted log had done are not read again, and what it had stored
    # (indexed every 100 objects) is not stored again
    assert art.stats.files == 400
    assert art.stats.hashed_files == 200
    assert art.stats.new_objects < 320
    assert tree_of(art.download(root=tmp_path / "dl")) == files


@pytest.mark.parametrize("backend_mode", ["remote"])
def test_tree_objects_waiting_for_their_data_spill_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a server, a log keeps the trees it put until the data they name is sent; past
    a limit they wait in a temporary file (a million files' trees were ~120 MB of memory) and
    still reach the server after their data, in order."""
    from cairn.client import deferred
    from cairn.objects.spill import Spill

    files = {f"d{i // 10:02d}/f{i}.txt": f"file {i}\n".encode() for i in range(300)}
    data = make_tree(tmp_path / "data", files)
    monkeypatch.setattr(deferred, "IN_MEMORY_BYTES", 512)
    spilled: list[int] = []
    real_append = Spill.append

    def counting(self: Spill, batch: list[object]) -> None:
        spilled.append(len(batch))
        real_append(self, batch)

    monkeypatch.setattr(Spill, "append", counting)
    with cairn.init(project="proj") as run:
        art = cairn.Artifact("folders", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    assert len(spilled) > 5  # 31 tree objects of ~400 bytes: most went to the file
    assert tree_of(art.download(root=tmp_path / "dl")) == files
    with cairn.init(project="proj") as run:
        again = cairn.Artifact("folders", type="dataset")
        again.add_dir(data)
        run.log_artifact(again)
    assert again.version == art.version  # nothing changed: the same version


def test_deferred_objects_come_back_in_order_across_the_spill() -> None:
    from cairn.client.deferred import Deferred

    held = Deferred(in_memory_bytes=100)
    objects = [(f"blake3:{i:064x}", bytes([i % 256]) * (i % 70)) for i in range(200)]
    for digest, blob in objects:
        held.add(digest, blob)
        assert held._held_bytes < 100  # never more than the limit in memory
    assert held.spilled > 150
    assert list(held.items()) == objects
    assert list(held.items()) == objects  # read again: the same
    held.close()
    assert not held and list(held.items()) == []
