"""`RemoteBackend`: the SDK's backend when CAIRN_URL names a Cairn server."""

from __future__ import annotations

import contextlib
from pathlib import Path

from cairn import config
from cairn.client.http import Http
from cairn.client.objects import HttpObjectStore
from cairn.client.parts import RemoteParts
from cairn.client.registry import RemoteRegistry
from cairn.client.retention import RemoteRetention
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, ProgressFn
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.store import ObjectStore
from cairn.service.parts import Parts
from cairn.service.registry import Registry
from cairn.service.retention import Retention


class RemoteBackend:
    """Registry and objects on a server; the hash cache and a cache of downloaded objects under
    CAIRN_DIR/cache (so a second download of the same files is local)."""

    def __init__(self, url: str, api_key: str | None = None, home: Path | None = None) -> None:
        self.home = home or config.cairn_dir()
        self.url = url
        self.http = Http(url, api_key)
        self.remote_odb = HttpObjectStore(self.http, self.home / "cache" / "objects")
        self.object_store: ObjectStore = self.remote_odb
        self.registry: Registry = RemoteRegistry(self.http)
        self.retention: Retention = RemoteRetention(self.http)
        self.parts: Parts = RemoteParts(self.http)
        self.hash_cache = HashCache(self.home / "cache" / "hashes.db")

    def __repr__(self) -> str:
        return f"RemoteBackend({self.url!r})"

    def ingestor(self, progress: ProgressFn | None = None) -> Ingestor:
        # whole folders are recorded per server (and taken only when the caller may see
        # their tree: `Ingestor.take_folder` asks the server)
        return Ingestor(self.object_store, self.hash_cache, progress=progress, store_key=self.url)

    def materializer(self, progress: ProgressFn | None = None) -> Materializer:
        return _CachedMaterializer(self.remote_odb, self.hash_cache, progress=progress)

    def close(self) -> None:
        self.registry.close()
        self.remote_odb.close()
        self.hash_cache.close()
        self.http.close()


class _CachedMaterializer(Materializer):
    """Downloads through the cache of downloaded objects: the cache is told what the files of
    each batch are, so that a capped one fetches a window ahead and keeps what the download
    still needs (`HttpObjectStore.download`)."""

    def __init__(
        self,
        object_store: HttpObjectStore,
        hash_cache: HashCache | None,
        *,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(object_store, hash_cache, progress=progress)
        self.remote = object_store

    def _fetching(self, todo: list[Wanted]) -> contextlib.AbstractContextManager[object]:
        # one download session per batch: what the cache tracks for it stays batch-sized
        sizes = {w.digest: w.size for w in todo if w.chunks is None}
        lists = {w.chunks for w in todo if w.chunks is not None}
        return self.remote.download(sizes, lists)


__all__ = ["RemoteBackend"]
