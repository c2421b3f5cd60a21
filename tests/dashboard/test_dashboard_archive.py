"""A version or a folder of it downloaded as one tar archive (FastAPI's TestClient): the
archive holds the version's files byte for byte, and it is streamed from the store one object
at a time, never built whole."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import TestClient, open_backend

import cairn
from cairn.dashboard import create_dashboard_app
from cairn.dashboard.pages.archive import tar_stream
from cairn.objects import chunking
from cairn.sdk.backend import reset_backends

LONG = "a-rather-long-folder-name-" * 5  # a path longer than ustar's 100 characters


class RecordingStore:
    """An object store that records how many bytes were read from it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read = 0
        self.largest = 0

    def get(self, digest: str, verify: bool = True) -> bytes:
        data: bytes = self.inner.get(digest, verify)
        self.read += len(data)
        self.largest = max(self.largest, len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def log_folder(folder: Path, name: str = "data") -> None:
    with cairn.init(project="p") as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)


@pytest.fixture
def fresh(cairn_env: Path) -> Iterator[Any]:
    backend = open_backend(cairn_env)
    yield backend
    backend.close()
    reset_backends()


def members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar.getmembers():
            assert m.isfile() and m.mode == 0o644, m.name
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
    return out


def test_archive_holds_the_version_byte_for_byte(fresh: Any, tmp_path: Path) -> None:
    rng = random.Random(7)
    files = {
        "README.md": b"# Data\n",
        "empty.txt": b"",
        "train/0.bin": rng.randbytes(5000),
        "train/big.ckpt": rng.randbytes(6 << 20),  # chunked: a chunk list and its chunks
        "train/b\u00e4r/\u65e5\u672c.txt": b"non-ASCII names\n",
        f"{LONG}/{LONG}.csv": b"a,b\n1,2\n",
        "val/x.txt": b"x" * 512,  # exactly one block: no padding
    }
    folder = tmp_path / "data"
    write_files(folder, files)
    log_folder(folder)
    client = TestClient(create_dashboard_app(fresh))

    r = client.get("/p/p/a/data/v/v0/archive")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-tar"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''data-v0.tar"
    assert "content-length" not in r.headers  # streamed, not built to measure it first
    got = members(r.content)
    assert got == files
    assert list(got) == sorted(files)  # in path order
    # the same version always gives the same bytes; 'latest' is sent to the vN address
    again = client.get("/p/p/a/data/v/latest/archive")
    assert again.url.path == "/p/p/a/data/v/v0/archive" and again.content == r.content

    # a folder: its files only, with their paths in the version
    r = client.get("/p/p/a/data/v/v0/archive", params={"path": "train"})
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''data-v0-train.tar"
    assert members(r.content) == {k: v for k, v in files.items() if k.startswith("train/")}
    r = client.get("/p/p/a/data/v/v0/archive", params={"path": "train/b\u00e4r/"})
    assert list(members(r.content)) == ["train/b\u00e4r/\u65e5\u672c.txt"]
    assert client.get("/p/p/a/data/v/v0/archive", params={"path": "nope"}).status_code == 404

    # the files page links to both
    page = client.get("/p/p/a/data/v/v0/files").text
    assert 'href="/p/p/a/data/v/v0/archive"' in page
    assert 'href="/p/p/a/data/v/v0/archive?path=train"' in page
    assert "Download folder (.tar)" in client.get("/p/p/a/data/v/v0/files/train").text


def test_a_large_version_streams_one_object_at_a_time(fresh: Any, tmp_path: Path) -> None:
    """What the server holds while it sends an archive does not grow with the version: every
    piece it yields is one header or one stored object, and before each piece it has read at
    most that one object more than it has sent."""
    rng = random.Random(11)
    files = {f"shard-{i}.bin": rng.randbytes(9 << 20) for i in range(4)}  # 36 MiB, chunked
    files.update({f"small/{i:03d}.txt": b"%d\n" % i for i in range(300)})
    folder = tmp_path / "big"
    write_files(folder, files)
    log_folder(folder, "big")
    info = fresh.registry.resolve("p", "big", "v0")
    store = RecordingStore(fresh.object_store)

    stream = tar_stream(store, info.digest, None, info.created_at)
    first = next(stream)
    # the first piece is the first file's header: read after its folder's tree objects only
    assert len(first) == 512 and store.read < 64 << 10
    sent = len(first)
    pieces = 1
    for piece in stream:
        pieces += 1
        sent += len(piece)
        assert len(piece) <= chunking.CHUNK_THRESHOLD
        # what was read and not yet sent: the tree objects, at most one object of content
        assert store.read - sent <= chunking.MAX_CHUNK + (64 << 10)
    total = sum(len(v) for v in files.values())
    assert sent > total  # headers and padding on top of every byte of the files
    assert store.largest <= chunking.CHUNK_THRESHOLD  # no object is the size of a shard
    assert pieces > total // chunking.MAX_CHUNK  # many pieces, not one archive in memory
