"""References to objects in S3, GCS and Azure (moto, fake-gcs-server, Azurite on 127.0.0.1):
objects that change, vanish or are versioned, prefixes of thousands of objects, and
credentials that never end up in Cairn's records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from emulators import AzureEmulator, GCSEmulator, S3Emulator

import cairn
from cairn.errors import (
    IntegrityError,
    ReferenceChangedError,
    ReferenceMissingError,
    TooManyObjectsError,
)
from cairn.objects.references import ReferenceSkippedWarning
from cairn.storage import open_storage
from cairn.storage.cloud import client


def tree_of(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def log_reference(uri: str, name: str | None = None, **kwargs: Any) -> cairn.Artifact:
    with cairn.init(project="refs", job_type="prep") as run:
        art = cairn.Artifact("data", type="dataset")
        art.add_reference(uri, name, **kwargs)
        return run.log_artifact(art)


class Bucket:
    """One fresh bucket on one emulator, written and changed the way a user's tools would
    (straight through the service, not through Cairn)."""

    def __init__(self, scheme: str, name: str) -> None:
        self.scheme = scheme
        self.name = name
        self.store = open_storage(f"{scheme}://{name}")

    def uri(self, key: str = "") -> str:
        return f"{self.scheme}://{self.name}/{key}"

    def write(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(client(self.scheme, self.name), key, data)  # overwrites, like a user would

    def delete(self, key: str) -> None:
        self.store.delete(key)


@pytest.fixture(params=["s3", "gcs", "azure"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    if request.param == "s3":
        s3: S3Emulator = request.getfixturevalue("s3_service")
        return Bucket("s3", s3.bucket())
    if request.param == "gcs":
        gcs: GCSEmulator = request.getfixturevalue("gcs_service")
        return Bucket("gs", gcs.bucket())
    azure: AzureEmulator = request.getfixturevalue("azure_service")
    return Bucket("az", azure.container())


DATA = {"data/train.csv": b"a,b\n1,2\n", "data/test.csv": b"a,b\n3,4\n", "data/x/y.bin": b"\0" * 99}


def test_a_prefix_reference_downloads_and_verifies(bucket: Bucket, tmp_path: Path) -> None:
    for key, data in DATA.items():
        bucket.write(key, data)
    bucket.write("other/z.txt", b"not under the prefix")
    art = log_reference(bucket.uri("data/"), "ds")
    files = {f.path: f for f in art.files()}
    assert sorted(files) == ["ds/test.csv", "ds/train.csv", "ds/x/y.bin"]
    assert files["ds/train.csv"].ref == bucket.uri("data/train.csv")
    assert files["ds/x/y.bin"].size == 99
    recorded = files["ds/train.csv"]._entry.fields
    assert recorded["etag"] and '"' not in recorded["etag"]

    out = art.download(root=tmp_path / "dl")
    assert tree_of(out) == {"ds/" + k.removeprefix("data/"): v for k, v in DATA.items()}
    art.verify(out)
    # the same prefix, unchanged, is the same version
    assert log_reference(bucket.uri("data/"), "ds").version == "v0"
    # one object, by its key
    one = log_reference(bucket.uri("data/test.csv"))
    assert [f.path for f in one.files()] == ["test.csv"]


def test_an_object_that_changes_makes_a_new_version_and_old_downloads_refuse(
    bucket: Bucket, tmp_path: Path
) -> None:
    for key, data in DATA.items():
        bucket.write(key, data)
    v0 = log_reference(bucket.uri("data/"))
    bucket.write("data/train.csv", b"a,b\n1,2\n5,6\n")
    v1 = log_reference(bucket.uri("data/"))
    assert (v1.version, v1.digest != v0.digest) == ("v1", True)

    with pytest.raises(IntegrityError, match=r"reference changed at the source: train\.csv"):
        v0.verify(tmp_path / "nothing-downloaded-yet")
    with pytest.raises(ReferenceChangedError, match=r"train\.csv") as info:
        v0.download(root=tmp_path / "dl0")
    assert "add_reference again" in str(info.value)
    assert not (tmp_path / "dl0" / "train.csv").exists()
    assert tree_of(v1.download(root=tmp_path / "dl1"))["train.csv"] == b"a,b\n1,2\n5,6\n"


def test_an_object_that_vanished(bucket: Bucket, tmp_path: Path) -> None:
    for key, data in DATA.items():
        bucket.write(key, data)
    art = log_reference(bucket.uri("data/"))
    bucket.delete("data/test.csv")
    with pytest.raises(ReferenceMissingError, match=r"(?s)test\.csv.*allow_missing_references"):
        art.download(root=tmp_path / "dl")
    with pytest.warns(ReferenceSkippedWarning, match=r"test\.csv"):
        out = art.download(root=tmp_path / "dl", allow_missing_references=True)
    assert sorted(tree_of(out)) == ["train.csv", "x/y.bin"]
    with pytest.raises(IntegrityError, match=r"reference missing at the source: test\.csv"):
        art.verify(out)
    with pytest.raises(ReferenceMissingError, match="nothing found"):
        log_reference(bucket.uri("no/such/prefix/"))


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_versioned_objects_are_fetched_as_recorded_even_after_overwrites(
    scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    service: Any = request.getfixturevalue("s3_service" if scheme == "s3" else "gcs_service")
    bucket = Bucket(scheme, service.bucket(versioned=True))
    bucket.write("model.bin", b"weights v1")
    v0 = log_reference(bucket.uri("model.bin"))
    version = v0.files()[0]._entry.fields["version"]
    assert version

    bucket.write("model.bin", b"weights v2")
    out = v0.download(root=tmp_path / "dl")
    assert tree_of(out) == {"model.bin": b"weights v1"}  # the recorded version, not the latest
    v0.verify(out)
    v1 = log_reference(bucket.uri("model.bin"))
    assert v1.version == "v1"
    assert tree_of(v1.download(root=tmp_path / "dl1")) == {"model.bin": b"weights v2"}

    # a URI may pin a version itself
    param = "versionId" if scheme == "s3" else "generation"
    pinned = log_reference(f"{bucket.uri('model.bin')}?{param}={version}", "old.bin")
    assert tree_of(pinned.download(root=tmp_path / "pinned")) == {"old.bin": b"weights v1"}
    with pytest.raises(ReferenceMissingError, match="no version"):
        log_reference(f"{bucket.uri('model.bin')}?{param}=123456")


def test_a_prefix_of_thousands_of_objects(s3_service: S3Emulator, tmp_path: Path) -> None:
    bucket = Bucket("s3", s3_service.bucket())
    keys = [f"shards/{i % 10}/part-{i:05d}.bin" for i in range(2000)]
    s3_service.seed(bucket.name, {k: k.encode() for k in keys})

    with pytest.raises(TooManyObjectsError, match=r"more than 1,500 objects"):
        cairn.Artifact("x", type="dataset").add_reference(bucket.uri("shards/"), max_objects=1500)
    art = log_reference(bucket.uri("shards/"), "shards", max_objects=2000)
    assert art.file_count == 2000
    paths = [f.path for f in art.files()]
    assert paths == sorted("shards/" + k.removeprefix("shards/") for k in keys)
    out = art.download(root=tmp_path / "dl", path_prefix="shards/3")
    got = tree_of(out)
    assert len(got) == 200
    assert got["shards/3/part-00003.bin"] == b"shards/3/part-00003.bin"


def test_credentials_never_reach_cairns_records(
    s3_service: S3Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0042")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret-do-not-store")
    bucket = Bucket("s3", s3_service.bucket())
    bucket.write("data/a.csv", b"a")
    art = log_reference(bucket.uri("data/"))
    assert tree_of(art.download(root=tmp_path / "dl")) == {"a.csv": b"a"}
    home = Path(os.environ["CAIRN_DIR"])
    for path in home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"AKIAEXAMPLEKEYID0042" not in content, path
            assert b"secret-do-not-store" not in content, path


def test_checksum_false_on_a_prefix_fetches_what_is_there_now(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket = Bucket("s3", s3_service.bucket())
    for key, data in DATA.items():
        bucket.write(key, data)
    art = log_reference(bucket.uri("data/"), "raw", checksum=False)
    assert [(f.path, f.ref, f.size) for f in art.files()] == [("raw", bucket.uri("data/"), 0)]
    bucket.write("data/new.txt", b"added later")
    out = art.download(root=tmp_path / "dl")
    assert tree_of(out)["raw/new.txt"] == b"added later"
    assert len(tree_of(out)) == 4
    art.verify(out)
