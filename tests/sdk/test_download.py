"""Using and downloading versions: references, download folders, verify, single files.

What happens in the download folder (where it is, verify, rewrites, copies) runs on SQLite and
remote (`SQLITE_AND_REMOTE`); references, listings and single files run on embedded PostgreSQL
too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sdk_helpers import SQLITE_AND_REMOTE, make_tree, tree_of, write

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import ArtifactStateError, DownloadConflictError, IntegrityError, NotFoundError

FILES_V0 = {"train.csv": b"a,b\n1,2\n", "test.csv": b"a,b\n3,4\n", "meta/info.json": b"{}"}
FILES_V1 = {**FILES_V0, "train.csv": b"a,b\n1,2\n5,6\n"}


@pytest.fixture
def versions(tmp_path: Path) -> list[cairn.Artifact]:
    """data-proj/ds v0 (alias 'stable') and v1 (alias 'fresh')."""
    out = []
    with cairn.init(project="data-proj", job_type="prep") as run:
        for files, alias in ((FILES_V0, "stable"), (FILES_V1, "fresh")):
            folder = make_tree(tmp_path / f"src-{alias}", files)
            art = cairn.Artifact("ds", type="dataset")
            art.add_dir(folder)
            out.append(run.log_artifact(art, aliases=[alias]))
    return out


def test_use_artifact_resolves_every_kind_of_reference(versions: list[cairn.Artifact]) -> None:
    v0, v1 = versions
    with cairn.init(project="data-proj", job_type="train") as run:
        assert run.use_artifact("ds:latest").digest == v1.digest
        assert run.use_artifact("ds").version == "v1"
        assert run.use_artifact("ds:v0").digest == v0.digest
        assert run.use_artifact("ds:stable").version == "v0"
        assert run.use_artifact("ds:fresh").version == "v1"
        assert run.use_artifact("ds:stable", type="dataset").version == "v0"
        assert cairn.use_artifact(v1).version == "v1"
    with cairn.init(project="other", job_type="train") as run:
        used = run.use_artifact("data-proj/ds:stable")
        assert (used.project, used.version, used.digest) == ("data-proj", "v0", v0.digest)
        assert tree_of(used.download()) == FILES_V0


@SQLITE_AND_REMOTE
def test_download_defaults_to_artifacts_name_version(versions: list[cairn.Artifact]) -> None:
    with cairn.init(project="data-proj") as run:
        art = run.use_artifact("ds:fresh")
        path = art.download()
    assert Path(path) == Path.cwd() / "artifacts" / "ds:v1"
    assert Path(path).resolve() == Path.cwd() / "artifacts" / "ds:v1"
    assert tree_of(path) == FILES_V1
    art.verify()
    assert tree_of(cairn.Api("data-proj").artifact("ds:v0").download()) == FILES_V0
    assert sorted(os.listdir("artifacts")) == ["ds:v0", "ds:v1"]


@SQLITE_AND_REMOTE
def test_download_to_a_chosen_root(versions: list[cairn.Artifact], tmp_path: Path) -> None:
    root = tmp_path / "elsewhere" / "deep"
    path = versions[0].download(root=root)
    assert Path(path) == root
    assert tree_of(root) == FILES_V0
    versions[0].verify(root)
    assert not Path("artifacts").exists()


def test_download_of_a_path_prefix(versions: list[cairn.Artifact], tmp_path: Path) -> None:
    path = versions[1].download(root=tmp_path / "meta-only", path_prefix="meta")
    assert tree_of(path) == {"meta/info.json": b"{}"}


@pytest.mark.parametrize("damage", ["modify", "modify-same-size", "remove", "add"])
@SQLITE_AND_REMOTE
def test_verify_detects_every_change_to_a_downloaded_folder(
    versions: list[cairn.Artifact], tmp_path: Path, damage: str
) -> None:
    art = versions[1]
    root = Path(art.download(root=tmp_path / "dl", copy=True))
    art.verify(root)
    if damage == "modify":
        (root / "train.csv").write_bytes(b"a,b\n9,9\n")
        expected = "size differs: train.csv"
    elif damage == "modify-same-size":
        (root / "train.csv").write_bytes(FILES_V1["train.csv"].replace(b"5", b"7"))
        expected = "content differs: train.csv"
    elif damage == "remove":
        (root / "meta" / "info.json").unlink()
        expected = "missing: meta/info.json"
    else:
        write(root / "meta" / "extra.txt", "not mine")
        expected = "not in the artifact: meta/extra.txt"
    with pytest.raises(IntegrityError, match="does not match data-proj/ds:v1") as info:
        art.verify(root)
    assert expected in str(info.value)
    assert "download() again to restore missing files" in str(info.value)
    assert "download(overwrite=True)" in str(info.value)
    assert ("remove the files that are not in the artifact" in str(info.value)) == (damage == "add")
    # a download puts the folder back in order (an added file is not the download's to remove);
    # a file the user changed is only replaced when asked
    if damage.startswith("modify"):
        with pytest.raises(DownloadConflictError, match=r"train\.csv: modified"):
            art.download(root=root)
    art.download(root=root, overwrite=True)
    if damage == "add":
        (root / "meta" / "extra.txt").unlink()
    art.verify(root)
    assert tree_of(root) == FILES_V1


def test_files_lists_paths_sizes_and_digests(versions: list[cairn.Artifact]) -> None:
    art = cairn.Api("data-proj").artifact("ds:v0")
    files = art.files()
    assert [f.path for f in files] == sorted(FILES_V0)
    for f in files:
        assert f.size == len(FILES_V0[f.path])
        assert f.digest == hash_bytes(FILES_V0[f.path])
    assert [f.path for f in art.files("meta")] == ["meta/info.json"]


def test_get_entry_downloads_one_file(versions: list[cairn.Artifact], tmp_path: Path) -> None:
    art = versions[0]
    entry = art.get_entry("meta/info.json")
    assert (entry.path, entry.size) == ("meta/info.json", 2)
    local = entry.download(root=tmp_path / "one")
    assert Path(local) == tmp_path / "one" / "meta" / "info.json"
    assert tree_of(tmp_path / "one") == {"meta/info.json": b"{}"}
    default = art.get_entry("test.csv").download()
    assert Path(default) == Path.cwd() / "artifacts" / "ds:v0" / "test.csv"
    assert Path(default).read_bytes() == FILES_V0["test.csv"]
    for missing in ("nope.csv", "meta"):
        with pytest.raises(NotFoundError, match=r"list them with art\.files\(\)"):
            art.get_entry(missing)


def test_file_downloads_a_single_file_artifact(tmp_path: Path) -> None:
    write(tmp_path / "model.pt", b"\x80weights")
    with cairn.init(project="proj") as run:
        run.log_artifact(tmp_path / "model.pt", name="model", type="model")
    with cairn.init(project="proj") as run:
        model = run.use_artifact("model:latest")
        path = model.file()
    assert Path(path) == Path.cwd() / "artifacts" / "model:v0" / "model.pt"
    assert Path(path).read_bytes() == b"\x80weights"
    assert Path(model.file(root=tmp_path / "m")).read_bytes() == b"\x80weights"


def test_file_refuses_a_multi_file_artifact(versions: list[cairn.Artifact]) -> None:
    with pytest.raises(ArtifactStateError, match=r"has 3 files; file\(\) is for single-file"):
        versions[0].file()
    assert not Path("artifacts").exists()


@SQLITE_AND_REMOTE
def test_a_second_download_of_the_same_version_rewrites_nothing(
    versions: list[cairn.Artifact], tmp_path: Path
) -> None:
    root = Path(versions[1].download(root=tmp_path / "dl"))
    first = {p: os.stat(root / p) for p in FILES_V1}
    again = cairn.Api("data-proj").artifact("ds:v1").download(root=root)
    assert Path(again) == root
    for p, st in first.items():
        now = os.stat(root / p)
        assert (now.st_ino, now.st_mtime_ns, now.st_ctime_ns) == (
            st.st_ino,
            st.st_mtime_ns,
            st.st_ctime_ns,
        ), p
    # a file the user changed since is not replaced unless asked
    (root / "test.csv").write_bytes(b"mine")
    with pytest.raises(DownloadConflictError, match=r"test\.csv: modified") as info:
        versions[1].download(root=root)
    assert info.value.conflicts == [("test.csv", "modified")]
    assert (root / "test.csv").read_bytes() == b"mine"
    versions[1].download(root=root, overwrite=True)
    assert tree_of(root) == FILES_V1


@SQLITE_AND_REMOTE
def test_downloaded_files_are_independent_writable_copies(
    versions: list[cairn.Artifact], tmp_path: Path
) -> None:
    a = Path(versions[0].download(root=tmp_path / "a"))
    (a / "train.csv").write_bytes(b"edited by the user")
    b = Path(versions[0].download(root=tmp_path / "b"))
    assert tree_of(b) == FILES_V0
    versions[0].verify(b)


@SQLITE_AND_REMOTE
def test_an_edit_that_keeps_size_and_mtime_is_still_detected(
    versions: list[cairn.Artifact], tmp_path: Path
) -> None:
    art = versions[1]
    root = Path(art.download(root=tmp_path / "dl"))
    target = root / "train.csv"
    st = os.stat(target)
    with open(target, "r+b") as f:
        f.write(b"X")  # same size, other content
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(IntegrityError, match=r"content differs: train\.csv"):
        art.verify(root)
    with pytest.raises(DownloadConflictError, match=r"train\.csv: modified"):
        art.download(root=root)
    art.download(root=root, overwrite=True)
    assert tree_of(root) == FILES_V1


@SQLITE_AND_REMOTE
def test_a_download_into_a_new_folder_stopped_half_way_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder appears only once complete; a Ctrl-C leaves the files so far in a hidden
    folder beside it, and the next download takes them from there."""
    from cairn.objects import materialize
    from cairn.objects.materialize import Materializer

    files = {f"part{i % 3}/{i:03}.txt": f"row {i}\n" * (i + 1) for i in range(120)}
    with cairn.init(project="data-proj", job_type="prep") as run:
        art = cairn.Artifact("many", type="dataset")
        art.add_dir(make_tree(tmp_path / "src", files))
        run.log_artifact(art)
    place = Materializer._place
    written: list[str] = []
    stopping = [True]

    def stop_at_50(self: Materializer, w: materialize.Wanted, *args: object) -> None:
        if stopping[0] and len(written) == 50:
            raise KeyboardInterrupt
        written.append(w.path)
        place(self, w, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Materializer, "_place", stop_at_50)
    monkeypatch.setattr(materialize, "BATCH", 16)
    dest = tmp_path / "out" / "many"
    with cairn.init(project="data-proj", job_type="train") as run:
        used = run.use_artifact("many:latest")
        with pytest.raises(KeyboardInterrupt):
            used.download(root=dest)
        assert not dest.exists()
        (hidden,) = dest.parent.iterdir()
        assert hidden.name.startswith(".many.cairn-download-")
        assert len(tree_of(hidden)) == 50
        written.clear()
        stopping[0] = False
        assert used.download(root=dest) == str(dest)
    assert len(written) == 70  # the 50 written before the stop were kept
    assert tree_of(dest) == {p: c.encode() for p, c in files.items()}
    assert os.listdir(dest.parent) == ["many"]
    used.verify(root=str(dest))


def test_a_new_folder_appears_with_its_references_or_not_at_all(tmp_path: Path) -> None:
    shared = make_tree(tmp_path / "shared", {"labels.csv": "a,b\n"})
    with cairn.init(project="data-proj", job_type="prep") as run:
        art = cairn.Artifact("mixed", type="dataset")
        art.add_dir(make_tree(tmp_path / "src", {"x.txt": "x"}))
        art.add_reference((shared / "labels.csv").as_uri(), name="labels.csv")
        run.log_artifact(art)
        used = run.use_artifact("mixed:latest")
    assert tree_of(used.download(root=tmp_path / "ok")) == {"x.txt": b"x", "labels.csv": b"a,b\n"}
    (shared / "labels.csv").unlink()
    dest = tmp_path / "out"
    with pytest.raises(cairn.errors.CairnError, match=r"labels\.csv"):
        used.download(root=dest)
    assert not dest.exists()  # not a folder without its references
    from cairn.objects.references import ReferenceSkippedWarning

    with pytest.warns(ReferenceSkippedWarning, match=r"labels\.csv"):
        assert tree_of(used.download(root=dest, allow_missing_references=True)) == {"x.txt": b"x"}
