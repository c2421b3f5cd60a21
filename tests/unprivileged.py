"""Running a test's scenario as an unprivileged user.

Some behaviour cannot be seen as root (root reads a file whatever its mode, so `chmod 000` stops
nothing). CI runs as root; rather than skipping, such tests run their scenario in a subprocess as
``nobody`` (``setpriv``, util-linux). Where that is impossible the test fails under
CAIRN_REQUIRE_ALL=1 (the rule of ``require()`` in tests/conftest.py) and skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
        pytest.fail(f"required test dependency missing: {why}", pytrace=False)
    pytest.skip(why)


def is_root() -> bool:
    return os.geteuid() == 0


@contextmanager
def nobody_dir() -> Iterator[Path]:
    """A temp folder the user ``nobody`` owns (and can reach: it is not below pytest's tmp_path,
    which only root may enter)."""
    import pwd

    user = pwd.getpwnam("nobody")
    path = Path(tempfile.mkdtemp(prefix="cairn-nobody-"))
    path.chmod(0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` as the user nobody; cairn and the tests' helpers importable."""
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "setpriv (util-linux) is needed to run a scenario as nobody")
    assert setpriv is not None
    paths = [SRC, TESTS, os.path.join(TESTS, "sdk")]
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([*paths, full_env.get("PYTHONPATH", "")])
    full_env["HOME"] = full_env.get("CAIRN_DIR", "/nonexistent")
    command = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return subprocess.run(
        [*command, sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
