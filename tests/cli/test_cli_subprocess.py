"""The installed `cairn` command, as a shell runs it: exit codes and streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from unprivileged import require

CAIRN = Path(sys.executable).parent / "cairn"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAIRN_QUIET": "1"}
    return subprocess.run(
        [str(CAIRN), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_installed_command_exit_codes(folder: Callable[..., Path], tmp_path: Path) -> None:
    require(CAIRN.exists(), f"the cairn script is not installed at {CAIRN} (pip install -e .)")
    data = folder("data", {"a.csv": "1\n"})
    pushed = run("push", str(data), "--project", "sp", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"]["qualified_name"] == "sp/data:v0"

    usage = run("artifact", "get")
    assert usage.returncode == 2
    assert usage.stderr.startswith("error: Missing argument")

    missing = run("artifact", "show", "sp/nothing")
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: artifact 'nothing' does not exist")
    assert missing.stderr.count("\n") == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run("artifact", "verify", "sp/data:v0", str(empty))
    assert bad.returncode == 4
    assert "missing: a.csv" in bad.stdout

    blocker = tmp_path / "file"
    blocker.write_text("x")
    failed = run("artifact", "get", "sp/data", "--root", str(blocker))
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr
