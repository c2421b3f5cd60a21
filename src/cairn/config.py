"""Where Cairn keeps things, from the environment. Read at call time, never cached."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cairn_dir() -> Path:
    """The embedded store's home: ``CAIRN_DIR``, default ``~/.cairn``."""
    return Path(os.environ.get("CAIRN_DIR") or "~/.cairn").expanduser().absolute()


#: variables naming the default download folder, first set wins (`cairn.wandb` adds
#: WANDB_ARTIFACT_DIR after CAIRN_ARTIFACT_DIR)
ARTIFACT_DIR_VARIABLES = ["CAIRN_ARTIFACT_DIR"]


def artifact_dir() -> Path:
    """Where ``art.download()`` puts a version without a ``root``: ``CAIRN_ARTIFACT_DIR``,
    default ``./artifacts`` (absolute)."""
    chosen = next((os.environ[v] for v in ARTIFACT_DIR_VARIABLES if os.environ.get(v)), None)
    return Path(chosen or "artifacts").expanduser().absolute()


def offline() -> bool:
    """``CAIRN_OFFLINE=1``: use the embedded store even when ``CAIRN_URL`` or a saved login
    names a server."""
    return os.environ.get("CAIRN_OFFLINE", "").lower() in ("1", "true", "yes")


def database_url() -> str:
    """``CAIRN_DATABASE_URL``, default a SQLite file under ``CAIRN_DIR``."""
    url = os.environ.get("CAIRN_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{cairn_dir() / 'cairn.db'}"


def default_project() -> str | None:
    return os.environ.get("CAIRN_PROJECT") or None


def credentials_path() -> Path:
    """Where `cairn login` saves the server and key: ``CAIRN_DIR/credentials.json``."""
    return cairn_dir() / "credentials.json"


def saved_login() -> dict[str, str] | None:
    """``{"url": ..., "key": ...}`` saved by `cairn login`, or None (absent or unreadable)."""
    try:
        data: Any = json.loads(credentials_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    url, key = data.get("url"), data.get("key")
    if not isinstance(url, str) or not url or not isinstance(key, str):
        return None
    return {"url": url, "key": key}


def normalize_url(url: str) -> str:
    """A server URL without trailing slashes or the ``/api/v1`` suffix."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")].rstrip("/")
    return url


def server_url() -> str | None:
    """``CAIRN_URL``, else the server saved by `cairn login`, else None (embedded store)."""
    if offline():
        return None
    url = os.environ.get("CAIRN_URL")
    if url:
        return url
    saved = saved_login()
    return saved["url"] if saved else None


def api_key() -> str | None:
    """``CAIRN_API_KEY``, else the key saved by `cairn login` when the server in use is the
    one it was saved for."""
    key = os.environ.get("CAIRN_API_KEY")
    if key:
        return key
    saved = saved_login()
    if saved is None or not saved["key"]:
        return None
    url = os.environ.get("CAIRN_URL") or saved["url"]
    return saved["key"] if normalize_url(url) == normalize_url(saved["url"]) else None


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {raw!r}")
    return value


def heartbeat_interval() -> float:
    """How often a running run tells the registry it is alive (CAIRN_HEARTBEAT_SECONDS)."""
    return _seconds("CAIRN_HEARTBEAT_SECONDS", 30.0)


def run_timeout() -> float:
    """How long a 'running' run may stay silent before it is reported as crashed
    (CAIRN_RUN_TIMEOUT_SECONDS): its process was killed, or its machine went away."""
    return _seconds("CAIRN_RUN_TIMEOUT_SECONDS", 300.0)


def lock_file() -> str | None:
    """``CAIRN_LOCK``: the `cairn.lock` to honour (a path), ``off`` to honour none, or None to
    look for one from the working directory up to the repository's root."""
    return os.environ.get("CAIRN_LOCK") or None
