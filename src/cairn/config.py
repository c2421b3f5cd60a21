"""Cairn's settings from the environment: the one module that reads ``CAIRN_*`` variables.

Each variable has a constant named like it (for code that sets one, e.g. the CLI's
``--quiet`` or `cairn server` passing its settings to its workers) and a function that reads
it, at call time, never cached. docs/configuration.md lists them all (a test checks both).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict, get_type_hints

from cairn.errors import InvalidInputError, StoreError

# --- the variables ------------------------------------------------------------------------------
CAIRN_DIR = "CAIRN_DIR"
CAIRN_DATABASE_URL = "CAIRN_DATABASE_URL"
CAIRN_STORE = "CAIRN_STORE"
CAIRN_PROJECT = "CAIRN_PROJECT"
CAIRN_ARTIFACT_DIR = "CAIRN_ARTIFACT_DIR"
CAIRN_URL = "CAIRN_URL"
CAIRN_API_KEY = "CAIRN_API_KEY"
CAIRN_OFFLINE = "CAIRN_OFFLINE"
CAIRN_LOCK = "CAIRN_LOCK"
CAIRN_HEARTBEAT_SECONDS = "CAIRN_HEARTBEAT_SECONDS"
CAIRN_RUN_TIMEOUT_SECONDS = "CAIRN_RUN_TIMEOUT_SECONDS"
CAIRN_RETRY_SECONDS = "CAIRN_RETRY_SECONDS"
CAIRN_DIRECT_TRANSFERS = "CAIRN_DIRECT_TRANSFERS"
CAIRN_UPLOAD_BATCH_BYTES = "CAIRN_UPLOAD_BATCH_BYTES"
CAIRN_FS_CACHE_MB = "CAIRN_FS_CACHE_MB"
CAIRN_CACHE_MAX = "CAIRN_CACHE_MAX"
CAIRN_QUIET = "CAIRN_QUIET"
CAIRN_DEBUG = "CAIRN_DEBUG"
CAIRN_WEBHOOK_WORKER = "CAIRN_WEBHOOK_WORKER"
CAIRN_WEBHOOK_TIMEOUT = "CAIRN_WEBHOOK_TIMEOUT"
CAIRN_WEBHOOK_MAX_ATTEMPTS = "CAIRN_WEBHOOK_MAX_ATTEMPTS"
CAIRN_WEBHOOK_BACKOFF = "CAIRN_WEBHOOK_BACKOFF"
CAIRN_WEBHOOK_POLL = "CAIRN_WEBHOOK_POLL"
CAIRN_WEBHOOK_KEEP_DAYS = "CAIRN_WEBHOOK_KEEP_DAYS"
CAIRN_RETENTION_INTERVAL = "CAIRN_RETENTION_INTERVAL"


# --- where things are ---------------------------------------------------------------------------
def cairn_dir() -> Path:
    """The embedded store's home: ``CAIRN_DIR``, default ``~/.cairn``."""
    return Path(os.environ.get(CAIRN_DIR) or "~/.cairn").expanduser().absolute()


def cairn_dir_set() -> bool:
    """Whether ``CAIRN_DIR`` is set (not empty): `cairn.wandb` sets it from ``WANDB_DIR``
    only when it is not."""
    return bool(os.environ.get(CAIRN_DIR))


def store_url() -> str | None:
    """``CAIRN_STORE``: where the embedded store keeps objects, a folder or a bucket URL
    (s3://, gs://, az://); None: the folder ``store`` under ``CAIRN_DIR``."""
    return os.environ.get(CAIRN_STORE) or None


#: variables naming the default download folder, first set wins (`cairn.wandb` adds
#: WANDB_ARTIFACT_DIR after CAIRN_ARTIFACT_DIR)
ARTIFACT_DIR_VARIABLES = [CAIRN_ARTIFACT_DIR]


def artifact_dir() -> Path:
    """Where ``art.download()`` puts a version without a ``root``: ``CAIRN_ARTIFACT_DIR``,
    default ``./artifacts`` (absolute)."""
    chosen = next((os.environ[v] for v in ARTIFACT_DIR_VARIABLES if os.environ.get(v)), None)
    return Path(chosen or "artifacts").expanduser().absolute()


def offline() -> bool:
    """``CAIRN_OFFLINE=1``: use the embedded store even when ``CAIRN_URL`` or a saved login
    names a server."""
    return os.environ.get(CAIRN_OFFLINE, "").lower() in ("1", "true", "yes")


def database_url() -> str:
    """``CAIRN_DATABASE_URL``, default a SQLite file under ``CAIRN_DIR``."""
    url = os.environ.get(CAIRN_DATABASE_URL)
    if url:
        return url
    return f"sqlite:///{cairn_dir() / 'cairn.db'}"


def default_project() -> str | None:
    """``CAIRN_PROJECT``: the project when none is given (None: the caller's default,
    'default')."""
    return os.environ.get(CAIRN_PROJECT) or None


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


def url_from_env() -> str | None:
    """``CAIRN_URL`` as set (None when unset or empty), whatever ``CAIRN_OFFLINE`` and the
    saved login say: the CLI's commands that run where the store is refuse to run when it is
    set."""
    return os.environ.get(CAIRN_URL) or None


def api_key_from_env() -> str | None:
    """``CAIRN_API_KEY`` as set (None when unset or empty)."""
    return os.environ.get(CAIRN_API_KEY) or None


def server_url() -> str | None:
    """``CAIRN_URL``, else the server saved by `cairn login`, else None (embedded store)."""
    if offline():
        return None
    url = url_from_env()
    if url:
        return url
    saved = saved_login()
    return saved["url"] if saved else None


def api_key() -> str | None:
    """``CAIRN_API_KEY``, else the key saved by `cairn login` when the server in use is the
    one it was saved for."""
    key = api_key_from_env()
    if key:
        return key
    saved = saved_login()
    if saved is None or not saved["key"]:
        return None
    url = url_from_env() or saved["url"]
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
    return _seconds(CAIRN_HEARTBEAT_SECONDS, 30.0)


def run_timeout() -> float:
    """How long a 'running' run may stay silent before it is reported as crashed
    (CAIRN_RUN_TIMEOUT_SECONDS): its process was killed, or its machine went away."""
    return _seconds(CAIRN_RUN_TIMEOUT_SECONDS, 300.0)


def lock_file() -> str | None:
    """``CAIRN_LOCK``: the `cairn.lock` to honour (a path), ``off`` to honour none, or None to
    look for one from the working directory up to the repository's root."""
    return os.environ.get(CAIRN_LOCK) or None


# --- talking to a server ------------------------------------------------------------------------
def retry_seconds(default: float) -> float:
    """``CAIRN_RETRY_SECONDS``: how long the HTTP client retries an idempotent request whose
    connection dropped or that got 502/503/504, else ``default`` (the client's, 60 s); 0 or
    less: never retry."""
    raw = os.environ.get(CAIRN_RETRY_SECONDS, "")
    try:
        return max(0.0, float(raw)) if raw else default
    except ValueError:
        raise StoreError(
            f"{CAIRN_RETRY_SECONDS}={raw!r} is not a number of seconds (default {default:g})"
        ) from None


def direct_transfers() -> bool:
    """``CAIRN_DIRECT_TRANSFERS``: ``0`` (or ``false``, ``no``, ``off``) sends every object
    through the server even when it offers signed URLs of its bucket; default on."""
    return os.environ.get(CAIRN_DIRECT_TRANSFERS, "").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def upload_batch_bytes() -> int:
    """``CAIRN_UPLOAD_BATCH_BYTES``: the size of the batches and packs the HTTP client
    uploads; 0 (the default): the client's own sizes. A value that is not a whole number
    raises ValueError."""
    return int(os.environ.get(CAIRN_UPLOAD_BATCH_BYTES) or 0)


# --- the SDK and the CLI ------------------------------------------------------------------------
#: the default cap of the download cache: this share of the file system holding it, and at
#: least / at most these many bytes (docs/lifecycle.md, "The client cache", says why)
CACHE_MAX_DEFAULT_PERCENT = 10.0
CACHE_MAX_DEFAULT_FLOOR = 5 << 30
CACHE_MAX_DEFAULT_CEILING = 200 << 30
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def cache_max_text() -> str:
    """``CAIRN_CACHE_MAX`` as set (empty when unset)."""
    return os.environ.get(CAIRN_CACHE_MAX, "").strip()


def cache_max_setting() -> tuple[str, float | None]:
    """``CAIRN_CACHE_MAX`` parsed: ``("bytes", n)`` for a size (``50GB``, ``500MiB``, a
    number of bytes), ``("percent", p)`` for a share of the file system holding the cache
    (``10%``), ``("none", None)`` for no limit (``0``, ``none``, ``unlimited``), or
    ``("default", None)`` when unset. A value that is none of these raises
    `InvalidInputError` naming the variable."""
    raw = cache_max_text()
    if not raw:
        return ("default", None)
    text = raw.lower()
    if text in ("none", "unlimited", "off"):
        return ("none", None)
    percent = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*%", text)
    if percent:
        share = float(percent.group(1))
        if not 0 < share <= 100:
            raise InvalidInputError(
                f"{CAIRN_CACHE_MAX}={raw!r}: a share of the disk must be above 0% and at most "
                "100% (use 0 or none for no limit)"
            )
        return ("percent", share)
    size = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", text)
    if size is None or size.group(2) not in _SIZE_UNITS:
        raise InvalidInputError(
            f"{CAIRN_CACHE_MAX}={raw!r} is not a size: use e.g. 50GB, 500MiB, 10% (of the disk "
            "holding the cache) or 0/none for no limit"
        )
    value = int(float(size.group(1)) * _SIZE_UNITS[size.group(2)])
    if value == 0:
        return ("none", None)
    return ("bytes", float(value))


def cache_max_bytes(disk_bytes: int) -> int | None:
    """The cap of the client's download cache (``CAIRN_DIR/cache/objects``) in bytes, given
    the size of the file system holding it; None: no limit. Default: 10% of that file
    system, at least 5 GiB and at most 200 GiB."""
    kind, value = cache_max_setting()
    if kind == "none":
        return None
    if kind == "bytes" and value is not None:
        return int(value)
    if kind == "percent" and value is not None:
        return max(1, int(disk_bytes * value / 100))
    share = int(disk_bytes * CACHE_MAX_DEFAULT_PERCENT / 100)
    return min(max(share, CACHE_MAX_DEFAULT_FLOOR), CACHE_MAX_DEFAULT_CEILING)


def fs_cache_bytes() -> int:
    """``CAIRN_FS_CACHE_MB``: the memory the ``cairn://`` file system keeps verified objects
    in, per file system instance (MiB, default 256; 0 or less: none)."""
    raw = os.environ.get(CAIRN_FS_CACHE_MB)
    if not raw:
        return 256 << 20
    try:
        mb = int(raw)
    except ValueError:
        raise InvalidInputError(
            f"{CAIRN_FS_CACHE_MB} must be a whole number, not {raw!r}"
        ) from None
    return max(mb, 0) << 20


def quiet() -> bool:
    """``CAIRN_QUIET=1``: no progress bars (the CLI's ``--quiet`` sets it for the command)."""
    return os.environ.get(CAIRN_QUIET) == "1"


def debug() -> bool:
    """``CAIRN_DEBUG=1``: the CLI prints the full traceback of an error (as ``--debug``)."""
    return os.environ.get(CAIRN_DEBUG) == "1"


# --- webhooks (the server's delivery worker) --------------------------------------------------
def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def webhook_worker() -> bool:
    """``CAIRN_WEBHOOK_WORKER``: ``0``: a server process starts no webhook delivery thread
    (others deliver); any other value, or none: it starts one."""
    return os.environ.get(CAIRN_WEBHOOK_WORKER) != "0"


def webhook_timeout() -> float:
    """``CAIRN_WEBHOOK_TIMEOUT``: seconds one delivery attempt may take (default 10)."""
    return _number(CAIRN_WEBHOOK_TIMEOUT, 10)


def webhook_max_attempts() -> int:
    """``CAIRN_WEBHOOK_MAX_ATTEMPTS``: attempts at one delivery before it is given up
    (default 8; a fraction is cut to a whole number)."""
    return int(_number(CAIRN_WEBHOOK_MAX_ATTEMPTS, 8))


def webhook_backoff() -> float:
    """``CAIRN_WEBHOOK_BACKOFF``: about how many seconds after a failed delivery the first
    retry comes (default 10; doubling with each retry, at most an hour)."""
    return _number(CAIRN_WEBHOOK_BACKOFF, 10)


def webhook_poll() -> float:
    """``CAIRN_WEBHOOK_POLL``: seconds between the worker's looks for due deliveries
    (default 1)."""
    return _number(CAIRN_WEBHOOK_POLL, 1.0)


def webhook_keep_days() -> float:
    """``CAIRN_WEBHOOK_KEEP_DAYS``: days a finished delivery is kept in the delivery log
    (default 30; pending ones are never pruned)."""
    return _number(CAIRN_WEBHOOK_KEEP_DAYS, 30)


def retention_interval() -> float:
    """``CAIRN_RETENTION_INTERVAL``: seconds between a server's retention evaluations (default
    3600; ``0``: the server evaluates none, run ``cairn retention apply`` instead)."""
    return _number(CAIRN_RETENTION_INTERVAL, 3600)


# --- `cairn server` ---------------------------------------------------------------------------
#: `cairn server`'s settings as passed to its worker processes: ``ServerSettings`` field →
#: variable (`cairn server` sets them from its options; set by hand, they configure
#: ``cairn.server.app:app_from_env`` run by another ASGI server)
SERVER_VARIABLES = {
    "database_url": "CAIRN_SERVER_DATABASE_URL",
    "store": "CAIRN_SERVER_STORE",
    "max_object_bytes": "CAIRN_SERVER_MAX_OBJECT_BYTES",
    "max_batch_bytes": "CAIRN_SERVER_MAX_BATCH_BYTES",
    "max_json_bytes": "CAIRN_SERVER_MAX_JSON_BYTES",
    "max_form_bytes": "CAIRN_SERVER_MAX_FORM_BYTES",
    "user_quota": "CAIRN_SERVER_USER_QUOTA",
    "auth_failures": "CAIRN_SERVER_AUTH_FAILURES",
    "auth_window": "CAIRN_SERVER_AUTH_WINDOW",
    "session_ttl": "CAIRN_SERVER_SESSION_TTL",
    "store_url": "CAIRN_SERVER_STORE_URL",
    "store_endpoint": "CAIRN_SERVER_STORE_ENDPOINT",
    "direct": "CAIRN_SERVER_DIRECT",
    "signed_url_ttl": "CAIRN_SERVER_SIGNED_URL_TTL",
    "cache_dir": "CAIRN_SERVER_CACHE_DIR",
    "oidc_issuer": "CAIRN_SERVER_OIDC_ISSUER",
    "oidc_client_id": "CAIRN_SERVER_OIDC_CLIENT_ID",
    "oidc_client_secret": "CAIRN_SERVER_OIDC_CLIENT_SECRET",
    "oidc_username_claim": "CAIRN_SERVER_OIDC_USERNAME_CLAIM",
    "oidc_create_users": "CAIRN_SERVER_OIDC_CREATE_USERS",
    "threads": "CAIRN_SERVER_THREADS",
}


class ServerEnv(TypedDict, total=False):
    """The ``ServerSettings`` fields the ``CAIRN_SERVER_*`` variables set."""

    database_url: str
    store: Path
    max_object_bytes: int
    max_batch_bytes: int
    max_json_bytes: int
    max_form_bytes: int
    user_quota: int
    auth_failures: int
    auth_window: float
    session_ttl: float
    store_url: str
    store_endpoint: str
    direct: bool
    signed_url_ttl: int
    cache_dir: Path
    oidc_issuer: str
    oidc_client_id: str
    oidc_client_secret: str
    oidc_username_claim: str
    oidc_create_users: bool
    threads: int


def server_settings() -> ServerEnv:
    """The server settings the ``CAIRN_SERVER_*`` variables set: only those set and not
    empty (the others keep ``ServerSettings``' defaults). ``CAIRN_SERVER_DIRECT=0`` turns
    direct transfers off (any other value leaves them on); a number that is not one raises
    ValueError."""
    found: dict[str, Any] = {}
    for field, name in SERVER_VARIABLES.items():
        raw = os.environ.get(name)
        if field == "direct":
            if raw == "0":
                found[field] = False
        elif field == "oidc_create_users":
            if raw == "1":
                found[field] = True
        elif raw:
            found[field] = get_type_hints(ServerEnv)[field](raw)  # str, int, float or Path
    return found  # type: ignore[return-value]


def server_environment(settings: Mapping[str, object]) -> dict[str, str]:
    """The ``CAIRN_SERVER_*`` variables that give a worker process these settings (field →
    value, every field of ``SERVER_VARIABLES``): None is empty, a flag ``1``/``0``."""

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)

    return {name: text(settings[field]) for field, name in SERVER_VARIABLES.items()}
