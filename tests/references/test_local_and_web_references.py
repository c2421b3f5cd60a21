"""References to local folders (file://), web resources (http:// on a local server) and schemes
Cairn cannot read: what a user sees when logging them, downloading them, and when the data
behind them changes or disappears."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from web_server import WebServer

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import (
    DownloadConflictError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    ReferenceChangedError,
    ReferenceMissingError,
    SourceFileError,
    TooManyObjectsError,
)
from cairn.objects.references import ReferenceSkippedWarning

FILES = {"train.csv": b"a,b\n1,2\n", "test.csv": b"a,b\n3,4\n", "meta/info.json": b"{}"}


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def tree_of(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def log_reference(uri: str, name: str | None = None, **kwargs: object) -> cairn.Artifact:
    with cairn.init(project="refs", job_type="prep") as run:
        art = cairn.Artifact("data", type="dataset")
        art.add_reference(uri, name, **kwargs)  # type: ignore[arg-type]
        return run.log_artifact(art)


# --- file:// ---------------------------------------------------------------------------------


def test_a_folder_reference_lists_every_file_and_downloads_them(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    art = log_reference(folder.as_uri(), "ds")
    files = {f.path: f for f in art.files()}
    assert sorted(files) == ["ds/meta/info.json", "ds/test.csv", "ds/train.csv"]
    assert files["ds/train.csv"].ref == (folder / "train.csv").as_uri()
    assert files["ds/train.csv"].size == len(FILES["train.csv"])
    assert art.file_count == 3 and art.size == sum(len(v) for v in FILES.values())

    out = art.download(root=tmp_path / "dl")
    assert tree_of(out) == {f"ds/{k}": v for k, v in FILES.items()}
    art.verify(out)
    # nothing was copied into Cairn's store: the version holds only its tree objects
    assert (tmp_path / "shared" / "train.csv").read_bytes() == FILES["train.csv"]


def test_verify_checks_the_content_of_downloaded_file_copies(tmp_path: Path) -> None:
    """Only the local copy changes (same size, mtime put back): the source is as logged, so
    only hashing the copy finds it."""
    folder = make_tree(tmp_path / "shared", FILES)
    art = log_reference(folder.as_uri(), "ds")
    out = Path(art.download(root=tmp_path / "dl"))
    copy = out / "ds" / "train.csv"
    st = copy.stat()
    copy.write_bytes(FILES["train.csv"].replace(b"1", b"7"))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(IntegrityError, match=r"content differs: ds/train\.csv") as info:
        art.verify(out)
    assert "test.csv" not in str(info.value)  # the source and the other copies are fine


def test_reference_downloads_keep_modified_files_and_never_follow_symlinks(
    tmp_path: Path,
) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    art = log_reference(folder.as_uri(), "ds")
    out = Path(art.download(root=tmp_path / "dl"))
    art.download(root=out)  # its own earlier download is replaced freely
    (out / "ds" / "test.csv").write_bytes(b"the user's edit")
    with pytest.raises(DownloadConflictError, match=r"ds/test\.csv: modified"):
        art.download(root=out)
    assert (out / "ds" / "test.csv").read_bytes() == b"the user's edit"
    art.download(root=out, overwrite=True)
    assert tree_of(out) == {f"ds/{k}": v for k, v in FILES.items()}
    # a symlinked folder inside the target that points outside it is not written through
    elsewhere = make_tree(tmp_path / "elsewhere", {"info.json": b"the user's own"})
    other = tmp_path / "dl2"
    (other / "ds").mkdir(parents=True)
    (other / "ds" / "meta").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DownloadConflictError, match=r"ds/meta: a symlink"):
        art.download(root=other)
    assert tree_of(elsewhere) == {"info.json": b"the user's own"}
    art.download(root=other, overwrite=True)
    assert tree_of(elsewhere) == {"info.json": b"the user's own"}
    assert tree_of(other) == {f"ds/{k}": v for k, v in FILES.items()}


def test_the_version_changes_exactly_when_the_referenced_data_does(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    v0 = log_reference(folder.as_uri())
    again = log_reference(folder.as_uri())
    assert (again.version, again.digest) == ("v0", v0.digest)  # unchanged: no new version
    (folder / "train.csv").write_bytes(b"a,b\n9,9\n")
    v1 = log_reference(folder.as_uri())
    assert v1.version == "v1" and v1.digest != v0.digest


def test_downloading_a_reference_whose_file_changed_names_it(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    art = log_reference(folder.as_uri())
    (folder / "test.csv").write_bytes(b"a,b\n3,5\n")  # same size, other content
    with pytest.raises(IntegrityError, match=r"test\.csv") as info:
        art.download(root=tmp_path / "dl")
    assert isinstance(info.value, ReferenceChangedError)
    assert "changed at the source" in str(info.value)
    assert not (tmp_path / "dl" / "test.csv").exists()  # no wrong content left behind
    with pytest.raises(IntegrityError, match=r"reference changed at the source: test\.csv"):
        art.verify(tmp_path / "dl")


def test_a_vanished_file_is_an_error_or_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    art = log_reference(folder.as_uri())
    (folder / "meta" / "info.json").unlink()
    with pytest.raises(NotFoundError, match=r"(?s)meta/info\.json.*allow_missing_references=True"):
        art.download(root=tmp_path / "dl")
    with pytest.warns(ReferenceSkippedWarning, match=r"(?s)skipped 1 reference.*meta/info\.json"):
        out = art.download(root=tmp_path / "dl", allow_missing_references=True)
    assert tree_of(out) == {k: v for k, v in FILES.items() if k != "meta/info.json"}
    with pytest.raises(IntegrityError, match=r"reference missing at the source: meta/info\.json"):
        art.verify(out)


def test_one_file_reference_and_a_missing_path(tmp_path: Path) -> None:
    path = make_tree(tmp_path / "shared", FILES) / "train.csv"
    art = log_reference(path.as_uri(), "inputs/train.csv")
    assert [f.path for f in art.files()] == ["inputs/train.csv"]
    assert art.get_entry("inputs/train.csv").download(root=tmp_path / "one") == str(
        tmp_path / "one" / "inputs" / "train.csv"
    )
    assert (tmp_path / "one" / "inputs" / "train.csv").read_bytes() == FILES["train.csv"]
    with pytest.raises(SourceFileError, match="does not exist"):
        cairn.Artifact("x", type="dataset").add_reference((tmp_path / "nope").as_uri())


def test_max_objects_bounds_a_folder(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "many", {f"f{i:03d}": b"x" for i in range(30)})
    art = cairn.Artifact("x", type="dataset")
    with pytest.raises(TooManyObjectsError, match=r"more than 20 objects.*max_objects="):
        art.add_reference(folder.as_uri(), max_objects=20)
    assert art.files() == []  # nothing was added
    art.add_reference(folder.as_uri(), max_objects=30)
    assert len(art.files()) == 30


def test_references_and_files_live_side_by_side(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    local = make_tree(tmp_path / "local", {"model.bin": b"weights"})
    with cairn.init(project="refs") as run:
        art = cairn.Artifact("mixed", type="model")
        art.add_file(local / "model.bin")
        art.add_reference(folder.as_uri(), "data")
        with pytest.raises(InvalidPathError, match="two files at one path"):
            art.add_reference((folder / "train.csv").as_uri(), "data/train.csv")
        logged = run.log_artifact(art)
    out = logged.download(root=tmp_path / "dl")
    assert tree_of(out) == {"model.bin": b"weights", **{f"data/{k}": v for k, v in FILES.items()}}
    logged.verify(out)

    # a new version made from it keeps the references without reading them again
    with cairn.init(project="refs") as run:
        draft = logged.new_draft()
        draft.remove("model.bin")
        v1 = run.log_artifact(draft)
    assert tree_of(v1.download(root=tmp_path / "dl1")) == {f"data/{k}": v for k, v in FILES.items()}


def test_checksum_false_tracks_the_uri_only(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared", FILES)
    v0 = log_reference(folder.as_uri(), "ds", checksum=False)
    [entry] = v0.files()
    assert (entry.path, entry.ref, entry.size) == ("ds", folder.as_uri(), 0)
    (folder / "train.csv").write_bytes(b"changed")
    assert log_reference(folder.as_uri(), "ds", checksum=False).version == "v0"  # no new version
    out = v0.download(root=tmp_path / "dl")  # whatever is there now, unchecked
    assert tree_of(out) == {f"ds/{k}": v for k, v in {**FILES, "train.csv": b"changed"}.items()}
    v0.verify(out)


def test_a_scheme_cairn_cannot_read_is_tracked_by_uri(tmp_path: Path) -> None:
    art = log_reference("hf://datasets/acme/corpus@main", "corpus")
    [entry] = art.files()
    assert entry.ref == "hf://datasets/acme/corpus@main"
    with pytest.warns(ReferenceSkippedWarning, match=r"(?s)tracked by URI only.*hf://datasets"):
        out = art.download(root=tmp_path / "dl")
    assert tree_of(out) == {}
    art.verify(out)
    with pytest.raises(ValueError, match="not a URI"):
        cairn.Artifact("x", type="dataset").add_reference("just/a/path")


# --- https:// (a local web server) -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["etag", "lm", "plain"])
def test_web_references_detect_changes(web: WebServer, tmp_path: Path, mode: str) -> None:
    (web.root / "model.bin").write_bytes(b"weights v1")
    url = f"{web.url}/{mode}/model.bin"
    art = log_reference(url)
    [entry] = art.files()
    assert (entry.path, entry.ref, entry.size) == ("model.bin", url, 10)
    recorded = entry._entry.fields
    if mode == "etag":
        assert set(recorded) == {"etag"}
    elif mode == "lm":
        assert set(recorded) == {"last_modified"}
    else:  # no validators: the content was read and hashed
        assert recorded == {"blake3": hash_bytes(b"weights v1")}
    out = art.download(root=tmp_path / "dl")
    assert tree_of(out) == {"model.bin": b"weights v1"}
    art.verify(out)

    web.requests.clear()
    assert log_reference(url).version == "v0"  # unchanged
    if mode != "plain":
        assert all(r.startswith("HEAD") for r in web.requests)  # a HEAD is enough to know

    if mode == "lm":
        time.sleep(1.1)  # Last-Modified has one-second resolution
    (web.root / "model.bin").write_bytes(b"weights v2")
    os.utime(web.root / "model.bin")
    with pytest.raises(ReferenceChangedError, match=r"model\.bin"):
        art.download(root=tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "model.bin").exists()
    with pytest.raises(IntegrityError, match=r"reference changed at the source: model\.bin"):
        art.verify(out)
    assert log_reference(url).version == "v1"


def test_a_web_reference_that_vanished(web: WebServer, tmp_path: Path) -> None:
    (web.root / "a.txt").write_bytes(b"a")
    art = log_reference(f"{web.url}/etag/a.txt")
    (web.root / "a.txt").unlink()
    with pytest.raises(ReferenceMissingError, match=r"a\.txt"):
        art.download(root=tmp_path / "dl")
    with pytest.raises(ReferenceMissingError, match=r"nothing|no resource"):
        log_reference(f"{web.url}/etag/a.txt")
