"""Where the SDK's calls go. The SDK only sees `Backend`; it never knows whether the registry
and objects are local (embedded) or behind a server."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cairn import config
from cairn.core.gcpause import gc_relaxed
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, ProgressFn
from cairn.objects.materialize import Materializer
from cairn.objects.store import ObjectStore, open_object_store
from cairn.service.parts import Parts
from cairn.service.registry import Registry
from cairn.service.retention import Retention


class Backend(Protocol):
    @property
    def registry(self) -> Registry: ...

    @property
    def retention(self) -> Retention: ...

    @property
    def parts(self) -> Parts: ...

    @property
    def object_store(self) -> ObjectStore: ...

    @property
    def home(self) -> Path: ...

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor: ...

    def materializer(self, progress: ProgressFn | None = None) -> Materializer: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """Registry in SQL (SQLite under CAIRN_DIR by default), objects on local disk (or in object
    storage when CAIRN_STORE names a bucket: s3://bucket/prefix, gs://…, az://…)."""

    def __init__(self, home: Path | None = None, database_url: str | None = None) -> None:
        from cairn.service.sql import SqlRegistry
        from cairn.service.sql.parts import SqlParts
        from cairn.service.sql.retention import SqlRetention

        self.home = home or config.cairn_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        store_url = config.store_url() or self.home / "store"
        self.object_store: ObjectStore = open_object_store(
            store_url, cache_dir=self.home / "cache" / "stores"
        )
        url = database_url or config.database_url()
        sql = SqlRegistry(url)
        self.registry: Registry = sql
        self.retention: Retention = SqlRetention(sql.engine)
        self.parts: Parts = SqlParts(sql)
        self.hash_cache = HashCache(self.home / "cache" / "hashes.db")
        # names the store in the hash cache's record of whole folders (objects/folders.py)
        local = isinstance(store_url, Path) or "://" not in store_url
        self._store_key = str(Path(store_url).resolve()) if local else str(store_url)

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor:
        return Ingestor(
            self.object_store, self.hash_cache, progress=progress, store_key=self._store_key
        )

    def materializer(self, progress: ProgressFn | None = None) -> Materializer:
        return Materializer(self.object_store, self.hash_cache, progress=progress)

    def close(self) -> None:
        self.registry.close()
        self.hash_cache.close()
        self.object_store.close()


_lock = threading.Lock()
_backends: dict[tuple[str, str, str | None, str | None], Backend] = {}


class _PerProcess:
    """What `get_backend` hands out: one real backend per process.

    A forked child (multiprocessing's default on Linux) must neither use nor close its parent's
    database connections, upload threads and open files: the first use in a new process makes
    the child its own backend, and keeps the parent's referenced (never used, never closed)."""

    def __init__(self, make: Callable[[], Backend]) -> None:
        self._make = make
        self._pid = os.getpid()
        self._backend = make()
        self._inherited: list[Backend] = []

    def _here(self) -> Backend:
        if self._pid != os.getpid():
            with _lock:
                if self._pid != os.getpid():
                    self._inherited.append(self._backend)
                    self._backend = self._make()
                    self._pid = os.getpid()
        return self._backend

    def __repr__(self) -> str:
        return repr(self._backend)

    @property
    def registry(self) -> Registry:
        return self._here().registry

    @property
    def retention(self) -> Retention:
        return self._here().retention

    @property
    def parts(self) -> Parts:
        return self._here().parts

    @property
    def object_store(self) -> ObjectStore:
        return self._here().object_store

    @property
    def home(self) -> Path:
        return self._here().home

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor:
        return self._here().ingestor(progress)

    def materializer(self, progress: ProgressFn | None = None) -> Materializer:
        return self._here().materializer(progress)

    def close(self) -> None:
        if self._pid == os.getpid():  # a parent's backend is the parent's to close
            self._backend.close()

    def __getattr__(self, name: str) -> Any:  # hash_cache, ...
        return getattr(self._here(), name)


def get_backend() -> Backend:
    """The backend the environment asks for (CAIRN_URL → server with CAIRN_API_KEY, else
    embedded), shared per process and per configuration."""
    home, database_url = config.cairn_dir(), config.database_url()
    url, api_key = config.server_url(), config.api_key()
    key = (str(home), database_url, url, api_key)

    @gc_relaxed  # imports SQLAlchemy or httpx: thousands of objects, no garbage
    def make() -> Backend:
        if url:
            from cairn.client.backend import RemoteBackend

            return RemoteBackend(url, api_key, home)
        return EmbeddedBackend(home, database_url)

    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _PerProcess(make)
            _backends[key] = backend
        return backend


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def reset_backends() -> None:
    """Close every cached backend (tests). Not needed after a fork: a child process opens its
    own backend on first use."""
    with _lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()
