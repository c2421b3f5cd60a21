"""Where the SDK's calls go. The SDK only sees `Backend`; it never knows whether the registry
and objects are local (embedded) or behind a server."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

from cairn import config
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, ProgressFn
from cairn.objects.materialize import Materializer
from cairn.objects.odb import ObjectStore
from cairn.objects.packdb import PackedObjectDB
from cairn.service.registry import Registry


class Backend(Protocol):
    registry: Registry
    odb: ObjectStore
    home: Path

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor: ...

    def materializer(self, progress: ProgressFn | None = None) -> Materializer: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """Registry in SQL (SQLite under CAIRN_DIR by default), objects on local disk (or in object
    storage when CAIRN_STORE names a bucket: s3://bucket/prefix, gs://…, az://…)."""

    def __init__(self, home: Path | None = None, database_url: str | None = None) -> None:
        from cairn.service.sql_registry import SqlRegistry

        self.home = home or config.cairn_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        store_url = os.environ.get("CAIRN_STORE")
        if store_url:  # object storage (s3://bucket/prefix, gs://, az://): objects in packs
            from cairn.storage import open_storage
            from cairn.storage.cloud_packs import PackedRemoteObjectDB

            cache = self.home / "cache" / "stores"
            self.odb: ObjectStore = PackedRemoteObjectDB(open_storage(store_url), cache)
        else:
            self.odb = PackedObjectDB(self.home / "store")
        url = database_url or config.database_url()
        self.registry: Registry = SqlRegistry(url)
        self.hash_cache = HashCache(self.home / "cache" / "hashes.db")

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor:
        return Ingestor(self.odb, self.hash_cache, progress=progress)

    def materializer(self, progress: ProgressFn | None = None) -> Materializer:
        return Materializer(self.odb, self.hash_cache, progress=progress)

    def close(self) -> None:
        self.registry.close()
        self.hash_cache.close()
        close = getattr(self.odb, "close", None)
        if close is not None:
            close()


_lock = threading.Lock()
_backends: dict[tuple[str, str, str | None, str | None], Backend] = {}


def get_backend() -> Backend:
    """The backend the environment asks for (CAIRN_URL → server with CAIRN_API_KEY, else
    embedded), shared per process and per configuration."""
    url = config.server_url()
    key = (str(config.cairn_dir()), config.database_url(), url, config.api_key())
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            if url:
                from cairn.client.backend import RemoteBackend

                backend = RemoteBackend(url, config.api_key())
            else:
                backend = EmbeddedBackend()
            _backends[key] = backend
        return backend


def reset_backends() -> None:
    """Close every cached backend (tests, and after fork)."""
    with _lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()
