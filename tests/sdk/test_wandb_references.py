"""References as a W&B user reads them (issue 15): what was recorded for each entry (ETag,
version id, content hash) is on the entry, and an S3 "folder marker" (a 0-byte object, often
``application/x-directory``) is a folder whose children are listed. Every SDK mode, against
the S3, GCS and Azure emulators on loopback (folder markers are an S3 convention)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import AzureEmulator, GCSEmulator, S3Emulator, azure_service, gcs_service, s3_service
from sdk_helpers import tree_of, write

import cairn
from cairn.storage.cloud import client, normalize_etag

__all__ = ["azure_service", "gcs_service", "s3_service"]


def test_a_reference_entry_shows_what_was_recorded(s3_service: S3Emulator, tmp_path: Path) -> None:
    bucket = s3_service.bucket(versioned=True)
    s3 = s3_service.boto()
    put = s3.put_object(Bucket=bucket, Key="data/a.csv", Body=b"a,b\n1,2\n")
    local = write(tmp_path / "local.txt", "local")
    with cairn.init(project="proj") as run:
        art = cairn.Artifact("ds", type="dataset")
        art.add_reference(f"s3://{bucket}/data/a.csv")
        art.add_reference(local.as_uri(), name="local.txt")
        art.add_file(local, name="stored.txt")
        run.log_artifact(art)
    entry = cairn.Api("proj").artifact("ds:v0")["a.csv"]
    assert entry.is_reference
    assert entry.ref == f"s3://{bucket}/data/a.csv"
    assert entry.etag == put["ETag"].strip('"')
    assert entry.version_id == put["VersionId"]
    assert entry.content_hash is None  # S3 identifies content by ETag and version
    assert entry.extra == {"etag": entry.etag, "version": entry.version_id}
    on_disk = art["local.txt"]
    assert on_disk.is_reference and on_disk.etag is None and on_disk.version_id is None
    assert on_disk.content_hash is not None and on_disk.content_hash.startswith("blake3:")
    stored = art["stored.txt"]
    assert not stored.is_reference and stored.extra == {} and stored.etag is None
    assert stored.content_hash == stored.digest


def test_an_s3_folder_marker_is_a_folder(s3_service: S3Emulator, tmp_path: Path) -> None:
    bucket = s3_service.bucket()
    s3 = s3_service.boto()
    marker = {"Body": b"", "ContentType": "application/x-directory"}
    s3.put_object(Bucket=bucket, Key="images", **marker)
    s3.put_object(Bucket=bucket, Key="images/1.png", Body=b"one")
    s3.put_object(Bucket=bucket, Key="images/more", **marker)
    s3.put_object(Bucket=bucket, Key="images/more/", **marker)
    s3.put_object(Bucket=bucket, Key="images/more/2.png", Body=b"two")
    s3.put_object(Bucket=bucket, Key="images/empty.txt", Body=b"")  # an empty file stays
    s3.put_object(Bucket=bucket, Key="lonely", Body=b"")  # an empty object with nothing below
    with cairn.init(project="proj") as run:
        folder = run.log_artifact(f"s3://{bucket}/images")
        lonely = run.log_artifact(f"s3://{bucket}/lonely")
    assert folder.name == "images"
    assert [f.path for f in folder.files()] == ["1.png", "empty.txt", "more/2.png"]
    assert tree_of(folder.download(root=tmp_path / "dl")) == {
        "1.png": b"one",
        "empty.txt": b"",
        "more/2.png": b"two",
    }
    folder.verify(tmp_path / "dl")
    assert [(f.path, f.size) for f in lonely.files()] == [("lonely", 0)]


@pytest.mark.parametrize("scheme", ["gs", "az"])
def test_gcs_and_azure_reference_entries_show_what_was_recorded(
    scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import obstore

    if scheme == "gs":
        gcs: GCSEmulator = request.getfixturevalue("gcs_service")
        bucket = gcs.bucket(versioned=True)
    else:
        azure: AzureEmulator = request.getfixturevalue("azure_service")
        bucket = azure.container()
    store = client(scheme, bucket)
    obstore.put(store, "data/a.csv", b"a,b\n1,2\n")
    obstore.put(store, "data/more/b.csv", b"b\n")
    head: dict[str, Any] = dict(obstore.head(store, "data/a.csv"))
    with cairn.init(project="proj") as run:
        one = run.log_artifact(f"{scheme}://{bucket}/data/a.csv")
        folder = run.log_artifact(f"{scheme}://{bucket}/data", name="data")
    entry = cairn.Api("proj").artifact("a.csv:v0")["a.csv"]
    assert entry.is_reference and entry.ref == f"{scheme}://{bucket}/data/a.csv"
    assert entry.etag is not None and entry.etag == normalize_etag(head["e_tag"])
    if scheme == "gs":  # the generation, which pins the object
        assert entry.version_id is not None and entry.version_id == str(head["version"])
        assert entry.extra == {"etag": entry.etag, "version": entry.version_id}
    else:  # Azure records a version only when the account keeps versions
        assert entry.version_id is None and entry.extra == {"etag": entry.etag}
    assert entry.content_hash is None  # the service identifies content by ETag and version
    assert one.name == "a.csv" and tree_of(one.download(root=tmp_path / "one")) == {
        "a.csv": b"a,b\n1,2\n"
    }
    assert [(f.path, f.is_reference, bool(f.etag)) for f in folder.files()] == [
        ("a.csv", True, True),
        ("more/b.csv", True, True),
    ]
    assert tree_of(folder.download(root=tmp_path / "dl")) == {
        "a.csv": b"a,b\n1,2\n",
        "more/b.csv": b"b\n",
    }
    folder.verify(tmp_path / "dl")
