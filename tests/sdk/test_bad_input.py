"""Bad input: each is refused with a typed error from cairn.errors and a message saying what
to do, and leaves the store as it was (no new version, no new object). Checks that never reach
the store are in test_validation.py.

Files that are missing, change while read or clash, and values JSON cannot hold, are found by
the SDK: those run on SQLite and remote (`SQLITE_AND_REMOTE`); names, references, finished runs
and damaged objects run on embedded PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import (
    NOT_JSON,
    SQLITE_AND_REMOTE,
    object_location,
    store_unchanged,
    tree_of,
    write,
)

import cairn
from cairn.errors import (
    ArtifactNotFoundError,
    FileChangedError,
    IntegrityError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidPathError,
    NotFoundError,
    ObjectNotFoundError,
    ProjectNotFoundError,
    RunFinishedError,
    SourceFileError,
)
from unprivileged import is_root, nobody_dir, run_as_nobody


@pytest.fixture
def run(tmp_path: Path) -> Iterator[cairn.Run]:
    """An open run in project 'proj' that has logged ds:v0."""
    with cairn.init(project="proj") as r:
        r.log_artifact(write(tmp_path / "seed" / "seed.txt", "seed"), name="ds")
        yield r


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write(tmp_path / "data" / "a.csv", "1,2\n")


def test_invalid_aliases_and_tags_store_nothing(run: cairn.Run, data: Path) -> None:
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(data)
    for bad in ("a b", "", "../x", "x:y", "-x"):
        with store_unchanged():
            with pytest.raises(InvalidNameError, match=f"invalid alias {bad!r}"):
                run.log_artifact(art, aliases=["good", bad])
            with pytest.raises(InvalidNameError, match=f"invalid tag {bad!r}"):
                run.log_artifact(art, tags=[bad])
            art.tags = ["fine", bad]
            with pytest.raises(InvalidNameError, match=f"invalid tag {bad!r}"):
                run.log_artifact(art)
            art.tags = []
        assert art.is_draft


def test_invalid_project_names_and_references(run: cairn.Run) -> None:
    for bad in ("a b", "../p", "x:y"):
        with pytest.raises(InvalidNameError, match="invalid project name"):
            cairn.init(project=bad)
    assert cairn.current_run() is run
    for ref in ("a b:v0", "ds:", "ds:x y", "../ds", "ds:v0:v1", ""):
        with pytest.raises(InvalidNameError):
            run.use_artifact(ref)
    assert run.used_artifacts() == []


@SQLITE_AND_REMOTE
def test_a_missing_file(run: cairn.Run, tmp_path: Path, data: Path) -> None:
    art = cairn.Artifact("ds", type="dataset")
    with pytest.raises(SourceFileError, match="does not exist; check the path"):
        art.add_file(tmp_path / "nope.csv")
    with pytest.raises(SourceFileError, match="does not exist; check the path"):
        art.add_dir(tmp_path / "no-folder")
    with pytest.raises(SourceFileError, match="is a folder; use add_dir"):
        art.add_file(tmp_path)
    with pytest.raises(SourceFileError, match="is not a folder; use add_file"):
        art.add_dir(data)

    # a file that disappears between add_file and logging
    gone = write(tmp_path / "gone.csv", "soon gone")
    art.add_file(data)
    art.add_file(gone)
    gone.unlink()
    with store_unchanged(), pytest.raises(SourceFileError, match="does not exist") as info:
        run.log_artifact(art)
    assert info.value.path == str(gone)
    assert art.is_draft
    write(gone, "back again")  # another file now: refused until it is added again
    with store_unchanged(), pytest.raises(FileChangedError, match="changed since it was added"):
        run.log_artifact(art)
    art.add_file(gone)
    run.log_artifact(art)
    assert art.version == "v1"


_UNREADABLE = """
import sys
from pathlib import Path
import cairn
from cairn.errors import SourceFileError
from sdk_helpers import store_unchanged

secret, data = Path(sys.argv[1]), Path(sys.argv[2])
with cairn.init(project="proj") as run:
    art = cairn.Artifact("ds", type="dataset")
    try:
        art.add_file(secret)
        print("added it")
    except SourceFileError as exc:
        print("add refused:", exc)
    art.add_file(data)
    art.add_dir(secret.parent, name="secret")  # listed; read when logged
    try:
        with store_unchanged():
            run.log_artifact(art)
        print("logged it")
    except SourceFileError as exc:
        print("log refused:", exc)
    print("versions:", [a.version for a in run.logged_artifacts()])
"""


def test_an_unreadable_file(
    run: cairn.Run, tmp_path: Path, data: Path, database_url: str, backend_mode: str
) -> None:
    if is_root():  # root reads any file: the same scenario as the unprivileged user nobody
        with nobody_dir() as home:
            secret = write(home / "secret" / "key.bin", "secret")  # owned by root
            secret.chmod(0o000)
            mine = write(home / "data" / "a.csv", "1,2\n")
            env = {"CAIRN_DIR": str(home / "cairn")}
            if backend_mode == "sqlite":
                env["CAIRN_DATABASE_URL"] = f"sqlite:///{home / 'meta.db'}"
            done = run_as_nobody(_UNREADABLE, str(secret), str(mine), env=env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert (
            lines[0].startswith("add refused:") and "not readable; fix its permissions" in lines[0]
        )
        assert lines[1].startswith("log refused:") and "not readable" in lines[1], lines
        assert lines[2] == "versions: []"
        return
    secret = write(tmp_path / "secret" / "key.bin", "secret")
    secret.chmod(0o000)
    try:
        art = cairn.Artifact("ds", type="dataset")
        with pytest.raises(SourceFileError, match="not readable; fix its permissions"):
            art.add_file(secret)
        art.add_file(data)
        art.add_dir(secret.parent, name="secret")  # listed; read when logged
        with store_unchanged(), pytest.raises(SourceFileError, match="not readable"):
            run.log_artifact(art)
    finally:
        secret.chmod(0o600)


@SQLITE_AND_REMOTE
def test_metadata_that_is_not_json(run: cairn.Run, data: Path) -> None:
    v0 = run.use_artifact("ds:v0")
    for metadata in NOT_JSON.values():
        with pytest.raises(InvalidMetadataError, match="metadata"):
            cairn.Artifact("ds", type="dataset", metadata=metadata)
        # set after the draft was made: refused where it is set
        art = cairn.Artifact("ds", type="dataset")
        art.add_file(data)
        with pytest.raises(InvalidMetadataError, match="metadata"):
            art.metadata = metadata
        assert art.metadata == {}
        # and when editing a logged version
        with pytest.raises(InvalidMetadataError, match="metadata"):
            v0.metadata = metadata
        assert v0.metadata == {}
        if not isinstance(metadata, dict):
            continue  # a list is fine inside metadata, only not as all of it
        for key, value in metadata.items():
            with pytest.raises(InvalidMetadataError, match="metadata"):
                v0.metadata[key] = value
        # put inside a list after it was set: refused when logging, before anything is stored
        art.metadata["items"] = []
        art.metadata["items"].append(metadata)
        with store_unchanged(), pytest.raises(InvalidMetadataError, match="metadata"):
            run.log_artifact(art)
        assert art.is_draft
        v0.metadata["items"] = []
        v0.metadata["items"].append(metadata)
        with pytest.raises(InvalidMetadataError, match="metadata"):
            v0.save()
        v0.metadata = {}
    assert cairn.Api("proj").artifact("ds:v0").metadata == {}
    assert [h.field for h in v0.history()] == ["created"]


@SQLITE_AND_REMOTE
def test_config_and_metrics_that_are_not_json(run: cairn.Run) -> None:
    runs_before = [r.id for r in cairn.Api().runs("proj")]
    with pytest.raises(InvalidMetadataError, match="config"):
        cairn.init(project="proj", config={"seen": {1, 2}})
    assert [r.id for r in cairn.Api().runs("proj")] == runs_before
    with pytest.raises(InvalidMetadataError, match="logged metrics"):
        run.log({"model": object()})
    assert run.metrics() == []


def test_unknown_versions_aliases_and_artifacts(run: cairn.Run) -> None:
    api = cairn.Api("proj")
    with pytest.raises(ArtifactNotFoundError, match=r"has no version or alias 'v7'.*1 version, v0"):
        run.use_artifact("ds:v7")
    with pytest.raises(ArtifactNotFoundError, match="has no version or alias 'nope'"):
        run.use_artifact("ds:nope")
    with pytest.raises(ArtifactNotFoundError, match=r"'dss' does not exist.*Did you mean 'ds'"):
        run.use_artifact("dss:latest")
    with pytest.raises(ArtifactNotFoundError):
        api.artifact("ds:v9")
    with pytest.raises(ArtifactNotFoundError):
        api.artifact_versions("missing")
    with pytest.raises(ProjectNotFoundError, match="Did you mean 'proj'"):
        run.use_artifact("prj/ds:v0")
    assert issubclass(ProjectNotFoundError, NotFoundError)
    assert run.used_artifacts() == []


@SQLITE_AND_REMOTE
def test_two_files_at_one_path(run: cairn.Run, tmp_path: Path, data: Path) -> None:
    other = write(tmp_path / "other" / "a.csv", "other content")
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(data)
    with pytest.raises(InvalidPathError, match=r"two files at one path: 'a\.csv'.*overwrite=True"):
        art.add_file(other)
    with pytest.raises(InvalidPathError, match=r"two files at one path: 'a\.csv'"):
        art.add_dir(other.parent)
    with pytest.raises(InvalidPathError, match="two files at one path"), art.new_file("a.csv"):
        pass
    with pytest.raises(InvalidPathError, match="which is a file"):
        art.add_file(other, name="a.csv/inside.csv")
    art.add_file(other, name="dir/x.csv")
    with pytest.raises(InvalidPathError, match="already a folder"):
        art.add_file(other, name="dir")
    assert [f.path for f in art.files()] == ["a.csv", "dir/x.csv"]

    art.add_file(other, overwrite=True)
    run.log_artifact(art)
    assert tree_of(art.download()) == {"a.csv": b"other content", "dir/x.csv": b"other content"}


def test_logging_to_a_finished_run(run: cairn.Run, data: Path) -> None:
    run.finish()
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(data)
    with store_unchanged():
        with pytest.raises(
            RunFinishedError, match=r"is finished; start a new run with cairn\.init"
        ):
            run.log_artifact(art)
        with pytest.raises(RunFinishedError):
            run.log({"loss": 1.0})
        with pytest.raises(RunFinishedError):
            run.use_artifact("ds:v0")
        with pytest.raises(RunFinishedError, match=r"no active run; call cairn\.init"):
            cairn.log({"loss": 1.0})
        with pytest.raises(RunFinishedError, match="no active run"):
            cairn.log_artifact(art)
    assert art.is_draft
    assert cairn.Api().run(run.id).metrics() == []


@SQLITE_AND_REMOTE
def test_a_large_file_that_changes_while_it_is_read(
    run: cairn.Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "growing.log", os.urandom(6 << 20))
    real_readv = os.readv
    appended = []

    def readv_then_append(fd: int, buffers: Any) -> int:
        n = real_readv(fd, buffers)
        if not appended and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            with open(path, "ab") as f:  # another process keeps writing the file
                f.write(b"one more line\n")
            appended.append(n)
        return n

    monkeypatch.setattr(os, "readv", readv_then_append)
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(path)
    with store_unchanged(), pytest.raises(FileChangedError, match="changed while") as info:
        run.log_artifact(art)
    assert appended, "the file was never read with readv"
    assert info.value.path == str(path)
    assert art.is_draft

    monkeypatch.setattr(os, "readv", real_readv)
    art.add_file(path)  # added again: what it holds now is what gets logged
    run.log_artifact(art)
    assert Path(art.file(root=tmp_path / "dl")).read_bytes() == path.read_bytes()


@SQLITE_AND_REMOTE
def test_a_small_file_that_changes_while_it_is_read(
    run: cairn.Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "small.txt", "first line\n")
    real_read = os.read
    appended = []

    def read_then_append(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if not appended and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            with open(path, "ab") as f:
                f.write(b"second line\n")
            appended.append(len(data))
        return data

    monkeypatch.setattr(os, "read", read_then_append)
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(path)
    with store_unchanged(), pytest.raises(FileChangedError, match="add it to the artifact again"):
        run.log_artifact(art)
    assert appended
    monkeypatch.setattr(os, "read", real_read)
    with store_unchanged(), pytest.raises(FileChangedError, match="changed since it was added"):
        run.log_artifact(art)
    art.add_file(path)
    run.log_artifact(art)
    assert Path(art.file(root=tmp_path / "dl")).read_bytes() == b"first line\nsecond line\n"


def _flip_byte(digest: str, at: int = 0) -> None:
    pack, offset, length = object_location(digest)
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(offset + at % length)
        byte = f.read(1)
        f.seek(offset + at % length)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_object_is_detected_on_download(run: cairn.Run, tmp_path: Path) -> None:
    content = b"precious bytes\n" * 100
    write(tmp_path / "src" / "precious.bin", content)
    write(tmp_path / "src" / "other.txt", "fine")
    art = run.log_artifact(tmp_path / "src", name="precious")
    entry = art.get_entry("precious.bin")
    _flip_byte(entry.digest, at=700)

    dest = tmp_path / "dl"
    with pytest.raises(IntegrityError, match=r"corrupt|damaged") as info:
        art.download(root=dest)
    assert info.value.digest == entry.digest
    assert not (dest / "precious.bin").exists()  # no corrupt file is left behind
    # the damaged copy is forgotten (a local store) or refused again (a server): either way the
    # next read fails, saying the store is damaged and how to mend it
    with pytest.raises((IntegrityError, ObjectNotFoundError), match=r"corrupt|damaged"):
        entry.download(root=tmp_path / "dl2")
    # logging the same bytes again mends the version
    run.log_artifact(tmp_path / "src", name="precious")
    assert Path(entry.download(root=tmp_path / "dl3")).read_bytes() == content


def test_a_corrupted_tree_object_is_detected(run: cairn.Run, tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.txt", "a")
    art = run.log_artifact(tmp_path / "src", name="treed")
    _flip_byte(art.digest, at=5)
    fresh = cairn.Api("proj").artifact("treed:v0")
    with pytest.raises(IntegrityError, match=r"corrupt|damaged"):
        fresh.download(root=tmp_path / "dl")
    with pytest.raises((IntegrityError, ObjectNotFoundError), match=r"corrupt|damaged"):
        fresh.files()
    run.log_artifact(tmp_path / "src", name="treed")  # the same folder again mends it
    assert [f.path for f in cairn.Api("proj").artifact("treed:v0").files()] == ["a.txt"]


@SQLITE_AND_REMOTE
def test_a_new_file_whose_writer_fails_is_not_added(run: cairn.Run) -> None:
    art = cairn.Artifact("ds", type="dataset")
    with pytest.raises(ZeroDivisionError), art.new_file("half.txt") as f:
        f.write("half of it")
        _ = 1 / 0
    assert art.files() == []
    with art.new_file("half.txt") as f:
        f.write("all of it")
    run.log_artifact(art)
    assert tree_of(art.download()) == {"half.txt": b"all of it"}


# -- names with a control character: refused by every backend, nothing created

BAD = ["\n", "\x7f", "\x85", "\u2028", "\u202e"]


@pytest.mark.parametrize("end", BAD, ids=[f"U+{ord(c[-1]):04X}" for c in BAD])
def test_every_name_kind_with_a_control_character_is_refused_by_the_backend(
    run: cairn.Run, tmp_path: Path, end: str
) -> None:
    data = write(tmp_path / "more" / "a.csv", "1,2\n")
    with store_unchanged():
        with pytest.raises(InvalidNameError, match="invalid project name"):
            cairn.init(project="proj" + end)
        with pytest.raises(InvalidNameError, match="invalid artifact type"):
            cairn.init(project="proj", job_type="train" + end)
        with pytest.raises(InvalidNameError, match="invalid tag"):
            cairn.init(project="proj", tags=["t" + end])
        with pytest.raises(InvalidNameError, match="invalid artifact name"):
            run.log_artifact(data, name="ds" + end)
        with pytest.raises(InvalidNameError, match="invalid artifact type"):
            run.log_artifact(data, name="ds", type="dataset" + end)
        with pytest.raises(InvalidNameError, match="invalid alias"):
            run.log_artifact(data, name="ds", aliases=["best" + end])
        with pytest.raises(InvalidNameError, match="invalid tag"):
            run.log_artifact(data, name="ds", tags=["t" + end])
        for ref in ("ds" + end, "ds:v0" + end, "proj" + end + "/ds:v0"):
            with pytest.raises(InvalidNameError):
                run.use_artifact(ref)
        version = cairn.Api("proj").artifact("ds:v0")
        version.aliases = ["best" + end]
        with pytest.raises(InvalidNameError, match="invalid alias"):
            version.save()
    with pytest.raises(InvalidNameError, match="invalid run name"):
        cairn.init(project="proj", name="run" + end)
    api = cairn.Api("proj")
    assert [a.name for a in api.artifacts()] == ["ds"]
    assert [p.name for p in api.projects()] == ["proj"]
    assert cairn.Api("proj").artifact("ds:v0").aliases == ["latest"]
    assert run.used_artifacts() == []
