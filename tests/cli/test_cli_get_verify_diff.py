"""`cairn artifact get|verify|diff`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn


def test_get_to_default_folder(cli: Invoke, store: Path) -> None:
    out = cli("artifact", "get", "demo/data:v1").stdout
    where = Path("artifacts/data:v1").absolute()  # download() answers an absolute path
    assert out == f"Downloaded demo/data:v1 (3 files, 9 B) to {where}\n"
    root = Path("artifacts/data:v1")
    assert (root / "a.csv").read_text() == "1\n"
    assert (root / "sub" / "b.csv").read_text() == "22\n"
    assert (root / "c.csv").read_text() == "333\n"


def test_get_root_path_copy_and_quiet(cli: Invoke, store: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    out = cli("artifact", "get", "data:stable", "-p", "demo", "--root", str(dest), "-q").stdout
    assert out == f"{dest}\n"
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["a.csv", "b.csv"]
    only = tmp_path / "only"
    cli("artifact", "get", "demo/data:v1", "--root", str(only), "--path", "sub", "--copy")
    assert [p.relative_to(only).as_posix() for p in only.rglob("*") if p.is_file()] == ["sub/b.csv"]
    assert os.access(only / "sub" / "b.csv", os.W_OK)  # --copy: writable


def test_get_unknown_path_is_not_found(cli: Invoke, store: Path) -> None:
    result = cli("artifact", "get", "demo/data:v1", "--path", "nope", code=3)
    assert result.stderr.startswith("error: demo/data:v1 has no file or folder 'nope'")


def test_verify_ok_and_failed(cli: Invoke, store: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    cli("artifact", "get", "demo/data:v1", "--root", str(dest), "--copy")
    ok = cli("artifact", "verify", "demo/data:v1", str(dest))
    assert ok.stdout == f"OK: {dest} matches demo/data:v1 (3 files, 9 B)\n"
    (dest / "a.csv").write_text("changed\n")
    (dest / "extra.txt").write_text("x")
    (dest / "c.csv").unlink()
    bad = cli("artifact", "verify", "demo/data:v1", str(dest), code=4)
    assert "missing: c.csv" in bad.stdout
    assert "a.csv" in bad.stdout
    assert "not in the artifact: extra.txt" in bad.stdout
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith(f"error: {dest} does not match demo/data:v1 (3 differences)")
    assert f"cairn artifact get demo/data:v1 --root {dest} --force`" in bad.stderr


def test_get_keeps_modified_files_unless_force(cli: Invoke, store: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    cli("artifact", "get", "demo/data:v1", "--root", str(dest))
    (dest / "a.csv").write_text("my edit\n")
    (dest / "sub" / "b.csv").unlink()
    (dest / "c.csv").unlink()
    (dest / "c.csv").mkdir()
    (dest / "c.csv" / "mine.txt").write_text("x")
    refused = cli("artifact", "get", "demo/data:v1", "--root", str(dest), code=1)
    assert refused.stderr.startswith(f"error: 2 paths in {dest} would be lost by the download")
    assert "a.csv: modified" in refused.stderr
    assert "c.csv: a folder with content where the version has a file" in refused.stderr
    assert (dest / "a.csv").read_text() == "my edit\n"
    assert not (dest / "sub" / "b.csv").exists()  # nothing was written
    (dest / "c.csv" / "mine.txt").unlink()
    (dest / "c.csv").rmdir()
    cli("artifact", "get", "demo/data:v1", "--root", str(dest), "--force")
    ok = cli("artifact", "verify", "demo/data:v1", str(dest))
    assert ok.stdout.startswith("OK:")
    assert (dest / "a.csv").read_text() == "1\n"


def test_verify_missing_folder_is_usage_error(cli: Invoke, store: Path) -> None:
    result = cli("artifact", "verify", "demo/data:v1", "no-such-dir", code=2)
    assert "does not exist" in result.stderr


def test_diff(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    out = cli("artifact", "diff", "demo/data:v0", "demo/data:v1").stdout.splitlines()
    assert out[0] == "demo/data:v0 -> demo/data:v1"
    assert out[1] == "files: 1 added, 0 removed, 0 modified"
    assert out[2].split() == ["+", "added", "c.csv", "4", "B"]
    assert out[3:] == ["metadata:", "  ~ rows: 2 -> 3"]
    data = cli_json("artifact", "diff", "data:v1", "data:v0", "-p", "demo")
    assert data["counts"] == {"added": 0, "removed": 1, "modified": 0}
    new = cairn.Api("demo").artifact("data:v1").get_entry("c.csv")
    assert data["files"] == [
        {
            "path": "c.csv",
            "change": "removed",
            "old_size": new.size,
            "new_size": None,
            "old_digest": new.digest,
            "new_digest": None,
        }
    ]
    assert data["metadata"] == [{"key": "rows", "change": "changed", "old": 3, "new": 2}]


def test_diff_modified_and_identical(
    cli: Invoke, cli_json: Callable[..., Any], folder: Callable[..., Path]
) -> None:
    src = folder("d", {"x.txt": "aaaa", "keep.txt": "k"})
    cli("push", str(src), "-m", "k=1")
    (src / "x.txt").write_text("bbbbbb")
    cli("push", str(src), "-m", "k=1")
    out = cli("artifact", "diff", "d:v0", "d:v1").stdout
    assert "~ modified  x.txt  4 B -> 6 B" in out
    assert "keep.txt" not in out
    assert "metadata: identical" in out
    same = cli_json("artifact", "diff", "d:v1", "d:latest")
    assert same["same_files"] is True and same["files"] == [] and same["metadata"] == []
    assert "files: identical" in cli("artifact", "diff", "d:v1", "d:v1").stdout


def test_verify_counts_every_difference(
    cli: Invoke, folder: Callable[..., Path], tmp_path: Path
) -> None:
    cli("push", str(folder("many", {f"f{i:02d}": str(i) for i in range(25)})))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("artifact", "verify", "many", str(empty), code=4)
    assert "(25 differences)" in result.stderr
    assert "... and 5 more" in result.stdout


def test_get_stopped_by_ctrl_c_says_so_and_goes_on_when_run_again(
    cli: Invoke, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cairn.cli.output import EXIT_INTERRUPTED
    from cairn.objects.materialize import Materializer, Wanted

    place = Materializer._place
    written: list[str] = []

    def ctrl_c_after_one(self: Materializer, w: Wanted, *args: Any) -> None:
        if written:
            raise KeyboardInterrupt
        written.append(w.path)
        place(self, w, *args)

    monkeypatch.setattr(Materializer, "_place", ctrl_c_after_one)
    dest = tmp_path / "out"
    result = cli("artifact", "get", "demo/data:v1", "--root", str(dest), code=EXIT_INTERRUPTED)
    assert "interrupted" in result.stderr and "run again" in result.stderr
    assert not dest.exists()  # the folder appears only once complete
    monkeypatch.setattr(Materializer, "_place", place)
    cli("artifact", "get", "demo/data:v1", "--root", str(dest))
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "a.csv",
        "c.csv",
        "sub/b.csv",
    ]
    assert [p.name for p in tmp_path.iterdir() if "cairn-download" in p.name] == []
