"""`cairn cache info|clean`: only CAIRN_DIR/cache/files is cleaned, least recently used
first; the store is never touched."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

pytestmark = pytest.mark.embedded_only(
    "plants files in the embedded download cache; a server client's cache: test_cli_cache_remote.py"
)


def _cached(home: Path, name: str, size: int, age_days: float) -> Path:
    path = home / "cache" / "files" / "objects" / "blake3" / name[:2] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age_days * 86400
    os.utime(path, (then, then))
    return path


def test_cache_info(cli: Invoke, cli_json: Callable[..., Any], cli_env: Path) -> None:
    _cached(cli_env, "aa01", 1000, 1)
    _cached(cli_env, "bb02", 2000, 2)
    (cli_env / "cache" / "hashes.db").write_bytes(b"h" * 500)
    data = cli_json("cache", "info")
    assert data["path"] == str(cli_env / "cache")
    assert data["files"]["count"] == 2
    assert data["files"]["bytes"] == 3000
    assert data["total_bytes"] == 3500
    assert data["other_bytes"] == 500
    out = cli("cache", "info").stdout
    assert "download cache   3.0 kB in 2 files" in out


def test_cache_clean_lru_first(cli: Invoke, cli_json: Callable[..., Any], cli_env: Path) -> None:
    old = _cached(cli_env, "aa01", 1000, 30)
    middle = _cached(cli_env, "bb02", 1000, 20)
    recent = _cached(cli_env, "cc03", 1000, 1)
    store_obj = cli_env / "store" / "objects" / "blake3" / "dd" / "dd04"
    store_obj.parent.mkdir(parents=True)
    store_obj.write_bytes(b"s" * 5000)
    os.utime(store_obj, (0, 0))

    dry = cli("cache", "clean", "--max-size", "1.5kB", "--dry-run").stdout
    assert dry.startswith("Would delete 2 cached files (2.0 kB)")
    assert old.exists() and middle.exists()

    out = cli("cache", "clean", "--max-size", "1.5kB").stdout
    assert out.startswith("Deleted 2 cached files (2.0 kB); the download cache now holds 1.0 kB")
    assert not old.exists() and not middle.exists()
    assert recent.exists()
    assert store_obj.exists()
    assert not old.parent.exists()  # empty folders pruned
    assert cli_json("cache", "info")["files"]["count"] == 1


def test_cache_clean_default_empties_and_tmp(cli: Invoke, cli_env: Path) -> None:
    _cached(cli_env, "aa01", 10, 1)
    stale = cli_env / "cache" / "files" / "tmp" / "assemble-x"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"t")
    os.utime(stale, (0, 0))
    fresh = stale.with_name("assemble-y")
    fresh.write_bytes(b"t")
    out = cli("cache", "clean").stdout
    assert "Deleted 1 cached files (10 B)" in out
    assert "Deleted 1 stale temporary files." in out
    assert not stale.exists() and fresh.exists()


def test_cache_clean_bad_size(cli: Invoke) -> None:
    result = cli("cache", "clean", "--max-size", "lots", code=2)
    assert "'lots' is not a size" in result.stderr


def test_cache_on_empty_home(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    assert cli_json("cache", "info")["total_bytes"] == 0
    assert "Deleted 0 cached files" in cli("cache", "clean", "--max-size", "10GB").stdout
