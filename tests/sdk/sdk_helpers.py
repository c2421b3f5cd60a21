"""Helpers shared by the SDK tests: looking at the object store on disk, making files.

The embedded store keeps objects in pack files (``store/packs/``, the open one in
``store/tmp/``) found through an index (``store/index.db``): see docs/architecture.md. The
helpers read those files directly, never through the SDK under test.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cairn import config

# For a test whose behaviour is the SDK's, not the database's: embedded on SQLite runs the
# embedded code path and [remote] runs PostgreSQL's SQL (a server on PostgreSQL), so embedded
# on PostgreSQL adds nothing to it. Each file's themes keep a test on all three backends.
SQLITE_AND_REMOTE = pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])

# metadata that JSON cannot hold, by name (NaN and ±Inf are accepted, as by run.log)
NOT_JSON: dict[str, Any] = {
    "set": {"labels": {"cat", "dog"}},
    "nested-int-key": {"nested": {1: "int key"}},
    "nested-set": {"nested": {"deep": [1, {2, 3}]}},
    "object": {"when": object()},
    "int-key": {1: "int key"},
    "list": ["not", "a", "dict"],
}


def store_dir() -> Path:
    return config.cairn_dir() / "store"


def stored_objects() -> set[str]:
    """The digest of every object the store's index lists (the objects a reader can see)."""
    index = store_dir() / "index.db"
    if not index.exists():
        return set()
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        return {d for (d,) in db.execute("SELECT digest FROM objects")}
    finally:
        db.close()


def object_lengths() -> dict[str, int]:
    """{digest: length in bytes} of every object the store's index lists."""
    index = store_dir() / "index.db"
    if not index.exists():
        return {}
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT digest, length FROM objects").fetchall())
    finally:
        db.close()


def object_location(digest: str) -> tuple[Path, int, int]:
    """(pack file, offset, length) of a stored object."""
    db = sqlite3.connect(f"file:{store_dir() / 'index.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT pack, offset, length FROM objects WHERE digest = ?", (digest,)
        ).fetchone()
    finally:
        db.close()
    assert row is not None, f"{digest} is not in the store"
    pack, offset, length = row
    return store_dir() / "packs" / pack[:2] / pack, offset, length


def pack_files(folder: str = "packs") -> dict[str, int]:
    """{path relative to the store: size} of every file under ``store/<folder>``."""
    root = store_dir()
    out = {}
    for d, _, files in os.walk(root / folder):
        for f in files:
            p = Path(d) / f
            out[p.relative_to(root).as_posix()] = p.stat().st_size
    return out


def store_bytes() -> int:
    """Bytes held in pack files, sealed and open."""
    return sum(pack_files("packs").values()) + sum(pack_files("tmp").values())


def footer_bytes(packs: set[str]) -> int:
    """The bytes of the footers (the list of objects each pack ends with) of these packs,
    named as `pack_files` names them."""
    from cairn.objects.packs.format import read_footer

    total = 0
    for name in packs:
        data = (store_dir() / name).read_bytes()
        found = read_footer(lambda offset, n, data=data: data[offset : offset + n], len(data))
        assert found is not None, f"{name} has no footer"
        total += len(data) - found[1]
    return total


def snapshot() -> tuple[set[str], dict[str, int]]:
    """What an unchanged store keeps: the indexed objects and the sealed packs (names, sizes)."""
    return stored_objects(), pack_files("packs")


def versions() -> set[str]:
    """The qualified name of every live version in the registry."""
    from cairn.sdk.backend import get_backend

    registry = get_backend().registry
    out = set()
    for project in registry.list_projects():
        for art in registry.list_artifacts(project.name):
            out |= {v.qualified_name for v in registry.list_versions(project.name, art.name)}
    return out


@contextmanager
def store_unchanged() -> Iterator[None]:
    """The block may fail, but must leave no new version and no new stored object."""
    before = (versions(), snapshot())
    yield
    assert (versions(), snapshot()) == before


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def make_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        write(root / rel, content)
    return root


def tree_of(root: str | Path) -> dict[str, bytes]:
    """{relative '/'-path: content} of every file below ``root``."""
    root = Path(root)
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = Path(d) / f
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def referenced_objects(root_digest: str, load: Any) -> set[str]:
    """Every object a version's root reaches: trees, page indexes, blobs, chunk lists and
    chunks (``load(digest) -> bytes`` reads one object)."""
    import json

    found: set[str] = set()
    todo = [root_digest]
    while todo:
        digest = todo.pop()
        if digest in found:
            continue
        found.add(digest)
        doc = json.loads(load(digest))
        if doc["cairn"] == "pages":
            todo.extend(p["d"] for p in doc["pages"])
            continue
        for entry in doc["entries"]:
            if entry["t"] == "d":
                todo.append(entry["d"])
            elif "c" in entry:
                found.add(entry["c"])
                chunks = json.loads(load(entry["c"]))
                found.update(d for d, _ in chunks["chunks"])
            else:
                found.add(entry["d"])
    return found


def log_worker(worker: int, logs: int, data_dir: str, ready: Any, start: Any, results: Any) -> None:
    """A process that logs ``logs`` versions of the artifact 'shared' (for multiprocessing)."""
    import traceback

    try:
        import cairn

        run = cairn.init(project="proj", job_type=f"worker-{worker}")
        ready.put(worker)
        if not start.wait(120):
            raise TimeoutError("never told to start")
        logged = []
        for j in range(logs):
            content = f"worker {worker} log {j}\n" * (100 + j)
            path = write(Path(data_dir) / f"w{worker}-{j}.txt", content)
            art = cairn.Artifact("shared", type="dataset")
            art.add_file(path, name="data.txt")
            run.log_artifact(art)
            logged.append((art.version, content, run.id))
        run.finish()
        results.put((worker, logged))
    except BaseException:
        results.put((worker, traceback.format_exc()))
