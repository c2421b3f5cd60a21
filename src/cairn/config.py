"""Where Cairn keeps things, from the environment. Read at call time, never cached."""

from __future__ import annotations

import os
from pathlib import Path


def cairn_dir() -> Path:
    """The embedded store's home: ``CAIRN_DIR``, default ``~/.cairn``."""
    return Path(os.environ.get("CAIRN_DIR") or "~/.cairn").expanduser().absolute()


def database_url() -> str:
    """``CAIRN_DATABASE_URL``, default a SQLite file under ``CAIRN_DIR``."""
    url = os.environ.get("CAIRN_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{cairn_dir() / 'cairn.db'}"


def default_project() -> str | None:
    return os.environ.get("CAIRN_PROJECT") or None


def server_url() -> str | None:
    return os.environ.get("CAIRN_URL") or None


def api_key() -> str | None:
    return os.environ.get("CAIRN_API_KEY") or None
