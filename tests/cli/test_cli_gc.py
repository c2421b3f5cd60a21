"""`cairn gc`: frees what deleted versions alone used; embedded local store only."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke, log_with_sdk, make_files

pytestmark = pytest.mark.embedded_only(
    "gc cleans a local store; test_gc_refuses_remote_stores: it refuses a server"
)


def _store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "store" / "packs").rglob("*.pack"))


def test_gc_frees_deleted_version(
    cli: Invoke, cli_json: Callable[..., Any], cli_env: Path, tmp_path: Path
) -> None:
    src = make_files(tmp_path / "src", {"keep.txt": "kept\n"})
    log_with_sdk("demo", src, "data")
    (src / "keep.txt").unlink()
    (src / "gone.bin").write_bytes(os.urandom(300_000))
    log_with_sdk("demo", src, "other")
    before = _store_bytes(cli_env)

    # recent packs are protected by the default grace period (24 h)
    cli("artifact", "rm", "demo/other:v0")
    assert cli_json("gc")["bytes_freed"] == 0

    dry = cli("gc", "--grace", "0", "--dry-run").stdout
    assert dry.startswith("Would free 300.")
    assert _store_bytes(cli_env) == before

    out = cli("gc", "--grace", "0").stdout
    assert out.startswith("Freed 300.")
    assert "1 packs deleted" in out
    assert _store_bytes(cli_env) < before - 300_000

    data = json.loads(cli("gc", "--grace", "0", "--json").stdout)
    assert data["bytes_freed"] == 0 and data["dry_run"] is False
    cli("artifact", "get", "demo/data:v0", "--root", str(tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "kept\n"
    cli("artifact", "verify", "demo/data:v0", str(tmp_path / "out"))


def test_gc_removes_crashed_writers_temp_pack(cli: Invoke, cli_env: Path) -> None:
    cli("gc")  # creates an empty store
    stale = cli_env / "store" / "tmp" / "deadbeef.pack"
    stale.write_bytes(b"x" * 5000)
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    assert "1 temp packs removed" in cli("gc").stdout
    assert not stale.exists()
    assert cli("--quiet", "gc").stdout == "0\n"


def test_gc_refuses_remote_stores(cli: Invoke) -> None:
    # a client of a server cannot gc (a bucket store: tests/storage/test_gc_bucket.py)
    result = cli("gc", code=1, env={"CAIRN_URL": "http://localhost:1"})
    assert "gc runs on the server / embedded local store only" in result.stderr
    assert "--store" in result.stderr


def test_gc_bad_grace(cli: Invoke) -> None:
    cli("gc", "--grace", "-1", code=2)
