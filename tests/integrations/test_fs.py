"""``cairn://`` through fsspec and the real data libraries, on every backend mode: listings,
ranged reads of chunked files, digests checked, writes refused, reads recorded as run inputs."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import cairn
from cairn import config
from cairn.errors import ArtifactStateError, IntegrityError, InvalidInputError
from cairn.objects import tree
from cairn.sdk.backend import get_backend

PROJECT = "fsproj"
# the heavier libraries run embedded and through a server; pandas and pyarrow on every mode
SOME_MODES = pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])
BIG = 6 << 20  # chunked (4 MiB and more): about 8 chunks


def _frame(n: int, seed: int) -> pd.DataFrame:
    rnd = random.Random(seed)
    return pd.DataFrame(
        {
            "id": range(seed * 1000, seed * 1000 + n),
            "x": [rnd.random() for _ in range(n)],
            "label": [rnd.choice(["cat", "dog", None]) for _ in range(n)],
        }
    )


@pytest.fixture
def logged(tmp_path: Path) -> dict[str, Any]:
    """A version with a CSV, a folder of Parquet parts, a chunked binary and a nested file."""
    src = tmp_path / "src"
    (src / "parts").mkdir(parents=True)
    (src / "deep" / "er").mkdir(parents=True)
    table = _frame(300, 1)
    table.to_csv(src / "table.csv", index=False)
    parts = [_frame(200, i) for i in range(3)]
    for i, part in enumerate(parts):
        part.to_parquet(src / "parts" / f"part-{i}.parquet", index=False)
    big = random.Random(7).randbytes(BIG)
    (src / "big.bin").write_bytes(big)
    (src / "deep" / "er" / "note.txt").write_text("hello")
    with cairn.init(project=PROJECT) as run:
        art = cairn.Artifact("data", "dataset")
        art.add_dir(src)
        run.log_artifact(art, aliases=["best"])
    return {"table": table, "parts": parts, "big": big, "version": art, "src": src}


def test_listing_info_glob_and_reads(logged: dict[str, Any]) -> None:
    fs = fsspec.filesystem("cairn")
    base = f"{PROJECT}/data:v0"
    assert sorted(fs.ls(f"cairn://{base}", detail=False)) == [
        f"{base}/big.bin",
        f"{base}/deep",
        f"{base}/parts",
        f"{base}/table.csv",
    ]
    info = fs.info(f"cairn://{base}/big.bin")
    assert info["type"] == "file" and info["size"] == BIG
    assert info["digest"].startswith("blake3:")
    assert fs.info(f"cairn://{base}/parts")["type"] == "directory"
    assert fs.isdir(f"cairn://{base}") and fs.isfile(f"cairn://{base}/deep/er/note.txt")
    assert not fs.exists(f"cairn://{base}/nope.txt")
    assert fs.glob(f"cairn://{base}/parts/*.parquet") == [
        f"{base}/parts/part-{i}.parquet" for i in range(3)
    ]
    assert fs.find(f"cairn://{base}/deep") == [f"{base}/deep/er/note.txt"]
    assert fs.cat(f"cairn://{base}/deep/er/note.txt") == b"hello"
    # aliases and the default project name the same version
    assert fs.cat(f"cairn://{PROJECT}/data:best/deep/er/note.txt") == b"hello"
    os.environ["CAIRN_PROJECT"] = PROJECT
    try:
        assert fs.cat("cairn://data:latest/deep/er/note.txt") == b"hello"
    finally:
        del os.environ["CAIRN_PROJECT"]
    # the registry above versions
    assert PROJECT in fs.ls("cairn://", detail=False)
    assert fs.ls(f"cairn://{PROJECT}", detail=False) == [f"{PROJECT}/data:latest"]


def test_ranged_reads_of_a_chunked_file(logged: dict[str, Any]) -> None:
    big: bytes = logged["big"]
    fs = fsspec.filesystem("cairn", skip_instance_cache=True)
    path = f"cairn://{PROJECT}/data:v0/big.bin"
    rnd = random.Random(3)
    for _ in range(20):
        start = rnd.randrange(0, BIG)
        end = min(BIG, start + rnd.randrange(1, 3 << 20))
        assert fs.cat_file(path, start, end) == big[start:end]
    assert fs.cat_file(path, -100) == big[-100:]
    with fs.open(path, "rb", block_size=1 << 20) as f:
        f.seek(5_000_000)
        assert f.read(10) == big[5_000_000:5_000_010]
        f.seek(-7, 2)
        assert f.read() == big[-7:]
        f.seek(0)
        assert f.read() == big


def test_a_ranged_read_fetches_only_the_chunks_it_covers(
    logged: dict[str, Any], backend_mode: str
) -> None:
    fs = fsspec.filesystem("cairn", skip_instance_cache=True)
    object_store = get_backend().object_store
    chunks_read: list[int] = []
    real_get = object_store.get

    def counting_get(digest: str, verify: bool = True) -> bytes:
        data = real_get(digest, verify)
        if len(data) >= 128 << 10:  # a chunk (tree objects and chunk lists are small)
            chunks_read.append(len(data))
        return data

    path = f"cairn://{PROJECT}/data:v0/big.bin"
    object_store.get = counting_get  # type: ignore[method-assign]  # counts, then reads for real
    try:
        assert fs.cat_file(path, 1_000_000, 1_000_100) == logged["big"][1_000_000:1_000_100]
        for future in list(fs._inflight.values()):  # the read-ahead, finished
            future.result()
    finally:
        del object_store.get
    # the chunk (or two) holding the range, of the file's ~8
    assert 1 <= len(chunks_read) <= 2
    assert sum(chunks_read) <= 4 << 20
    if backend_mode.startswith("remote"):  # what came over the wire, by the client's count
        assert 0 < getattr(object_store, "downloaded_bytes", 0) <= 4 << 20

    # an open file reads no further than asked either (no 4 MiB buffer filled past the read)
    chunks_read.clear()
    object_store.get = counting_get  # type: ignore[method-assign]
    try:
        with fs.open(path, "rb") as f:
            f.seek(4_000_000)
            assert f.read(100) == logged["big"][4_000_000:4_000_100]
    finally:
        del object_store.get
    assert 1 <= len(chunks_read) <= 2


@pytest.mark.parametrize("backend_mode", ["sqlite"])  # corrupts the local store's pack files
def test_a_corrupt_chunk_is_refused(logged: dict[str, Any]) -> None:
    store = config.cairn_dir() / "store"
    db = sqlite3.connect(store / "index.db")
    fs = fsspec.filesystem("cairn", skip_instance_cache=True)
    path = f"cairn://{PROJECT}/data:v0/big.bin"
    entry = fs.info(path)
    big = fs._entry(fs._parse(path))[1]
    assert isinstance(big, tree.File) and big.chunks
    chunks = json.loads(fs._load_tree(big.chunks))["chunks"]
    digest, _ = chunks[3]
    pack, offset, _length = db.execute(
        "SELECT pack, offset, length FROM objects WHERE digest = ?", (digest,)
    ).fetchone()
    db.close()
    packfile = next(p for p in store.rglob(pack))
    with open(packfile, "r+b") as f:
        f.seek(offset + 10)
        byte = f.read(1)
        f.seek(offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    start = sum(n for _, n in chunks[:3])
    with pytest.raises(IntegrityError):
        fs.cat_file(path, start, start + 100)
    # the chunks before it still read, and are right
    assert fs.cat_file(path, 0, 1000) == logged["big"][:1000]
    assert entry["size"] == BIG


def test_writes_and_bad_paths_are_refused(logged: dict[str, Any]) -> None:
    fs = fsspec.filesystem("cairn")
    with pytest.raises(ArtifactStateError, match="read-only"):
        fs.open(f"cairn://{PROJECT}/data:v0/new.txt", "wb")
    with pytest.raises(InvalidInputError, match="names no version"):
        fs.info(f"cairn://{PROJECT}/data/table.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        fs.cat(f"cairn://{PROJECT}/data:v0/missing.csv")
    with pytest.raises(FileNotFoundError):
        fs.info(f"cairn://{PROJECT}/data:v7/table.csv")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"cairn://{PROJECT}/data:v0/parts")
    with pytest.raises(InvalidInputError):
        fs.cat(f"cairn://{PROJECT}/data:v0/../secret")


def test_an_alias_follows_a_new_version_after_invalidate(
    logged: dict[str, Any], tmp_path: Path
) -> None:
    fs = fsspec.filesystem("cairn", skip_instance_cache=True)
    note = f"cairn://{PROJECT}/data:latest/deep/er/note.txt"
    assert fs.cat(note) == b"hello"
    src: Path = logged["src"]
    (src / "deep" / "er" / "note.txt").write_text("changed")
    with cairn.init(project=PROJECT) as run:
        art = cairn.Artifact("data", "dataset")
        art.add_dir(src)
        run.log_artifact(art)
    fs.invalidate_cache()
    assert fs.cat(note) == b"changed"
    assert fs.cat(f"cairn://{PROJECT}/data:v0/deep/er/note.txt") == b"hello"


def test_reading_inside_a_run_records_the_version_as_used(logged: dict[str, Any]) -> None:
    with cairn.init(project=PROJECT, job_type="train") as run:
        frame = pd.read_csv(f"cairn://{PROJECT}/data:best/table.csv")
        assert len(frame) == 300
        used = run.used_artifacts()
    assert [a.qualified_name for a in used] == [f"{PROJECT}/data:v0"]
    assert [r.id for r in logged["version"].used_by()] == [run.id]


def test_a_registry_collection_reads_the_version_it_links(logged: dict[str, Any]) -> None:
    """cairn://registry/collection:alias/... reads the linked version (no copy was made), lists
    as a folder of collections, and records use against the real version."""
    fs = fsspec.filesystem("cairn")
    api = cairn.Api()
    api.create_registry("published")
    logged["version"].link("published/tables", aliases=["production"])
    base = "cairn://published/tables:production"
    pd.testing.assert_frame_equal(pd.read_csv(f"{base}/table.csv"), logged["table"])
    assert fs.cat(f"{base}/deep/er/note.txt") == b"hello"
    assert fs.ls("cairn://published", detail=False) == ["published/tables:latest"]
    assert "published" in fs.ls("cairn://", detail=False)
    with cairn.init(project=PROJECT, job_type="report") as run:
        assert len(pd.read_parquet(f"{base}/parts")) == 600
        used = run.used_artifacts()
    assert [a.id for a in used] == [logged["version"].id]
    with pytest.raises(FileNotFoundError, match="staging"):
        fs.cat("cairn://published/tables:staging/table.csv")


# --- the real data libraries -----------------------------------------------------------------


def test_pandas(logged: dict[str, Any]) -> None:
    base = f"cairn://{PROJECT}/data:v0"
    csv = pd.read_csv(f"{base}/table.csv")
    pd.testing.assert_frame_equal(csv, logged["table"])
    part = pd.read_parquet(f"{base}/parts/part-1.parquet")
    pd.testing.assert_frame_equal(part, logged["parts"][1])
    every = pd.read_parquet(f"{base}/parts")
    assert len(every) == 600


def test_pyarrow_dataset(logged: dict[str, Any]) -> None:
    # pyarrow resolves only its own URI schemes: pass the filesystem, and paths without it
    fs = fsspec.filesystem("cairn")
    ds = pads.dataset(f"{PROJECT}/data:v0/parts", format="parquet", filesystem=fs)
    table = ds.to_table()
    assert table.num_rows == 600
    expected = pa.Table.from_pandas(pd.concat(logged["parts"], ignore_index=True))
    assert sorted(table.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    meta = pq.ParquetFile(fs.open(f"{PROJECT}/data:v0/parts/part-2.parquet")).metadata
    assert meta.num_rows == 200


@SOME_MODES
def test_polars(logged: dict[str, Any]) -> None:
    import polars as pl

    # polars opens only its own URI schemes: hand it an fsspec file (read in ranges)
    base = f"cairn://{PROJECT}/data:v0"
    with fsspec.open(f"{base}/parts/part-0.parquet") as f:
        frame = pl.scan_parquet(f).filter(pl.col("x") >= 0).collect()
    assert frame["id"].to_list() == logged["parts"][0]["id"].tolist()
    with fsspec.open(f"{base}/table.csv") as f:
        assert pl.read_csv(f).height == 300


@SOME_MODES
def test_duckdb(logged: dict[str, Any]) -> None:
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(fsspec.filesystem("cairn"))
    total = con.execute(
        f"SELECT count(*), sum(id) FROM read_parquet('cairn://{PROJECT}/data:v0/parts/*.parquet')"
    ).fetchone()
    parts = logged["parts"]
    assert total == (600, sum(int(p["id"].sum()) for p in parts))


@SOME_MODES
def test_huggingface_datasets(logged: dict[str, Any]) -> None:
    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files=f"cairn://{PROJECT}/data:v0/parts/*.parquet", split="train"
    )
    assert ds.num_rows == 600
    assert set(ds.column_names) == {"id", "x", "label"}


# dask's parquet reader calls a pandas API pandas 3.1 deprecates (theirs, not ours)
@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
@SOME_MODES
def test_dask(logged: dict[str, Any]) -> None:
    import dask
    import dask.dataframe as dd

    with dask.config.set(scheduler="threads"):
        frame = dd.read_parquet(f"cairn://{PROJECT}/data:v0/parts/*.parquet")
        assert int(frame["id"].count().compute()) == 600
        csv = dd.read_csv(f"cairn://{PROJECT}/data:v0/table.csv").compute()
    assert len(csv) == 300


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_works_with_no_cairn_import(logged: dict[str, Any]) -> None:
    """The entry point registers cairn:// with fsspec: a script that imports only pandas."""
    script = (
        "import sys, pandas\n"
        "assert 'cairn' not in sys.modules\n"
        f"df = pandas.read_parquet('cairn://{PROJECT}/data:v0/parts/part-0.parquet')\n"
        "print(len(df))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "200"


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_exit_waits_while_pyarrow_holds_the_filesystem(logged: dict[str, Any]) -> None:
    """pyarrow can let go of its wrapper of a cairn:// filesystem on a worker thread after a
    read returns; a script that ends then would abort (exit 134). The exit hook waits for it."""
    import threading

    from pyarrow.fs import FSSpecHandler

    from cairn.sdk import arrow_exit

    fs = fsspec.filesystem("cairn")
    holder = [FSSpecHandler(fs)]  # what pyarrow's PyFileSystem keeps
    assert not arrow_exit.wait_for_arrow(timeout=0.05)  # still wrapped: it waited, in vain
    threading.Timer(0.2, holder.clear).start()  # the worker thread lets go
    assert arrow_exit.wait_for_arrow(timeout=5)
    assert arrow_exit.wait_for_arrow(timeout=0)  # nothing left to wait for


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_parquet_scripts_end_cleanly(logged: dict[str, Any]) -> None:
    """Scripts that read Parquet through pandas and end at once exit 0 every time (without the
    exit hook about one in eight of them aborted after printing their result)."""
    script = (
        "import pandas\n"
        f"df = pandas.read_parquet('cairn://{PROJECT}/data:v0/parts/part-0.parquet')\n"
        "print(len(df))\n"
    )
    for _ in range(6):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
        )
        assert (out.returncode, out.stdout.strip()) == (0, "200"), out.stderr
