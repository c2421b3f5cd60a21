"""The code version of a run: git commit, dirty flag and diff, when run inside a git repo."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool
    diff: bytes


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def read_git_info(cwd: Path | None = None) -> GitInfo | None:
    where = cwd or Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where) or b""
    dirty = bool(status.strip())
    diff = (_git(["diff", "HEAD"], where) or b"") if dirty else b""
    return GitInfo(commit.decode().strip(), dirty, diff)
