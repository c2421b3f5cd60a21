"""Paths at the limits: a folder nested 1,500 levels deep (a path of ~3,000 characters) logs,
re-logs after a change deep down, diffs, downloads, verifies and checks out, with no
RecursionError and no more open descriptors than a default ulimit (1,024) allows."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn
from cairn.objects import fswalk, tree
from cairn.sdk.backend import get_backend

DEPTH = 1500


def _deep(root: Path, text: str) -> str:
    """root/a/a/.../a/leaf.txt, DEPTH folders down; returns the leaf's path inside root."""
    root.mkdir(exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            try:
                os.mkdir("a", dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
        os.write(leaf, text.encode())
        os.close(leaf)
    finally:
        os.close(fd)
    return "/".join(["a"] * DEPTH) + "/leaf.txt"


@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Iterator[None]:
    """Remove the deep trees afterwards, bottom-up without recursion: Python 3.11's
    shutil.rmtree (pytest's cleanup of old temp folders) recurses and would fail on them."""
    yield
    for folder, dirs, files in fswalk.walk(tmp_path, topdown=False):
        for name in files:
            os.unlink(os.path.join(folder, name))
        for name in dirs:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.unlink(path)
            else:
                os.rmdir(path)


@pytest.fixture
def default_ulimit() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_folder_thousands_of_levels_deep(
    tmp_path: Path, default_ulimit: None, deep_cleanup: None
) -> None:
    src = tmp_path / "d"
    leaf = _deep(src, "deep")
    (src / "top.txt").write_text("top")
    with cairn.init(project="deep") as run:
        first = run.log_artifact(src, name="deep", type="dataset")
    assert first.file_count == 2
    _deep(src, "deeper")
    with cairn.init(project="deep") as run:
        second = run.log_artifact(src, name="deep", type="dataset")
    assert second.version == "v1"
    changes = list(tree.diff(first.digest, second.digest, get_backend().object_store.get))
    assert [c.path for c in changes] == [leaf]

    dest = tmp_path / "dl"
    first.download(root=dest)
    assert (dest / leaf).read_text() == "deep" and (dest / "top.txt").read_text() == "top"
    first.verify(root=dest)
    (dest / "stray.txt").write_text("not in the version")
    second.checkout(dest)  # replaces the leaf, removes what the version lacks
    assert (dest / leaf).read_text() == "deeper" and not (dest / "stray.txt").exists()
    second.verify(root=dest)


def test_paths_at_the_os_limit(tmp_path: Path) -> None:
    """A 255-byte file name, and a file whose absolute path is just under PATH_MAX (4,096)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / ("n" * 255)).write_text("x")
    folder = str(src)
    while len(folder) + 202 < 3900:
        folder = os.path.join(folder, "f" * 200)
    os.makedirs(folder)
    leaf = os.path.join(folder, "g" * min(255, 4090 - len(folder) - 1))
    Path(leaf).write_text("y")
    assert len(leaf) > 3900
    with cairn.init(project="limits") as run:
        art = run.log_artifact(src, name="limits", type="dataset")
    assert art.file_count == 2
    dest = tmp_path / "dl"
    art.download(root=dest)
    inside = os.path.relpath(leaf, src)
    assert (dest / inside).read_text() == "y" and (dest / ("n" * 255)).read_text() == "x"
    art.verify(root=dest)
