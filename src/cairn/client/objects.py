"""`RemoteObjectStore`: the `ObjectStore` contract against a Cairn server.

Uploads: ``missing()`` asks the server in batches; ``put()`` only buffers, and full buffers
(``batch_bytes``, default 16 MiB) are sent as one framed, streamed request each, several at a
time; ``sync()`` sends the rest and waits. At most ``parallel + 1`` buffers exist at once, so
memory stays bounded however much is logged. Tree objects and chunk lists (which refer to other
objects) are held back and sent last, after every object they may refer to is on the server:
the store's invariant (an object that exists implies everything it refers to exists) holds on
the server too, so an interrupted log leaves nothing a later log would wrongly trust.

Downloads: objects are fetched into a local cache (a `PackedObjectDB` under
``CAIRN_DIR/cache/objects``), verified against their digests; ``warm()`` (called by downloads)
fetches every object a download needs in a few parallel streamed batches, including the chunks
of chunked files, so a second download of the same files reads only the cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cairn.client.http import Http
from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects import chunking
from cairn.objects.packdb import PackedObjectDB
from cairn.server.wire import OBJECTS_TYPE, FrameParser, frame_header

BATCH_BYTES = 16 << 20  # bytes per upload request
PARALLEL = 4  # upload and download requests in flight
CHECK_BATCH = 10_000  # digests per existence check
FETCH_GROUP = 256  # objects per download request at most
_CACHE_SYNC_BYTES = 256 << 20  # index the cache after this many new bytes
_STRUCTURAL = b'{"cairn":"'


def _structural(data: bytes) -> bool:
    """A tree, page index or chunk list (a blob that looks like one is treated alike: it is
    merely sent last)."""
    return data[: len(_STRUCTURAL)] == _STRUCTURAL


class RemoteObjectStore:
    def __init__(
        self,
        http: Http,
        cache_root: Path,
        *,
        batch_bytes: int | None = None,
        parallel: int = PARALLEL,
    ) -> None:
        self.http = http
        self.cache = PackedObjectDB(cache_root)
        self.batch_bytes = batch_bytes or int(
            os.environ.get("CAIRN_UPLOAD_BATCH_BYTES") or BATCH_BYTES
        )
        self.parallel = parallel
        self._lock = threading.Lock()
        self._batch: list[tuple[str, bytes]] = []
        self._batch_size = 0
        self._deferred: list[tuple[str, bytes]] = []
        self._staged: set[str] = set()  # put since the last sync
        self._inflight: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(parallel + 1)
        self._pool: ThreadPoolExecutor | None = None
        self._error: BaseException | None = None
        self._cache_new = 0
        # counters, for benchmarks and tests
        self.upload_requests = 0
        self.uploaded_bytes = 0
        self.download_requests = 0
        self.downloaded_bytes = 0

    def __repr__(self) -> str:
        return f"RemoteObjectStore({self.http.origin!r})"

    # --- existence ------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        return not self.missing([digest])

    def missing(self, digests: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(digests))
        with self._lock:
            ask = [d for d in wanted if d not in self._staged]
        result: set[str] = set()
        for start in range(0, len(ask), CHECK_BATCH):
            data = self.http.json(
                "POST",
                "/objects/missing",
                json={"digests": ask[start : start + CHECK_BATCH]},
                retry=True,
            )
            result.update(data["missing"])
        return result

    # --- uploads --------------------------------------------------------------------------------
    def put(self, digest: str, data: bytes | memoryview) -> bool:
        self._raise_failure()
        with self._lock:
            if digest in self._staged:
                return False
            self._staged.add(digest)
            blob = bytes(data)  # the caller may reuse its buffer
            if _structural(blob):
                self._deferred.append((digest, blob))
                return True
            self._batch.append((digest, blob))
            self._batch_size += len(blob)
            full = self._take() if self._batch_size >= self.batch_bytes else None
        if full:
            self._submit(full)
        return True

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool:
        parts = []
        done = 0
        while done < length:
            block = os.pread(fd, length - done, offset + done)
            if not block:
                raise EOFError(f"source ended {length - done} bytes early")
            parts.append(block)
            done += len(block)
        return self.put(digest, b"".join(parts))

    def add(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.missing([digest]):
            self.put(digest, data)
        return digest

    def _take(self) -> list[tuple[str, bytes]]:
        batch, self._batch, self._batch_size = self._batch, [], 0
        return batch

    def _submit(self, batch: list[tuple[str, bytes]]) -> None:
        self._slots.acquire()  # bounded memory: wait while enough batches are in flight
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="cairn-up")
                future = self._pool.submit(self._send, batch)
                self._inflight.append(future)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        self._slots.release()
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            with self._lock:
                self._error = self._error or exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _send(self, batch: list[tuple[str, bytes]]) -> None:
        """One upload request: the frames streamed from memory (retried as a whole: the
        server stores a batch entirely or not at all)."""
        length = sum(len(frame_header(d, len(b))) + len(b) for d, b in batch)

        def body() -> Iterator[bytes]:
            for digest, blob in batch:
                yield frame_header(digest, len(blob))
                yield blob

        self.http.request(
            "POST",
            "/objects",
            content=body,
            headers={"Content-Type": OBJECTS_TYPE, "Content-Length": str(length)},
            retry=True,
        )
        with self._lock:
            self.upload_requests += 1
            self.uploaded_bytes += length

    def sync(self) -> None:
        """Send everything put so far and wait until the server has it: data first, then the
        objects that refer to it, in the order they were put."""
        with self._lock:
            rest = self._take()
        if rest:
            self._submit(rest)
        self._wait()
        with self._lock:
            deferred, self._deferred = self._deferred, []
        batch: list[tuple[str, bytes]] = []
        size = 0
        for digest, blob in deferred:
            batch.append((digest, blob))
            size += len(blob)
            if size >= self.batch_bytes:
                self._send(batch)
                batch, size = [], 0
        if batch:
            self._send(batch)
        with self._lock:
            self._staged.clear()

    def _wait(self) -> None:
        while True:
            with self._lock:
                pending, self._inflight = self._inflight, []
            if not pending:
                break
            for future in pending:
                if not future.cancelled():
                    future.exception()  # wait; the first failure is kept by _done
        self._raise_failure()

    # --- downloads ------------------------------------------------------------------------------
    def _cache_put(self, digest: str, data: bytes | bytearray) -> None:
        if hash_bytes(data) != digest:
            raise IntegrityError(
                f"object {digest} is corrupt: the server sent bytes that hash to "
                f"{hash_bytes(data)}; its store is damaged, log the data that produced it again",
                digest=digest,
            )
        self.cache.put(digest, memoryview(data))
        with self._lock:
            self.downloaded_bytes += len(data)
            self._cache_new += len(data)
            flush = self._cache_new >= _CACHE_SYNC_BYTES
            if flush:
                self._cache_new = 0
        if flush:
            self.cache.sync()

    def _fetch_one(self, digest: str) -> bytes:
        response = self.http.request("GET", f"/objects/{digest}")
        with self._lock:
            self.download_requests += 1
        data = response.content
        self._cache_put(digest, data)
        return data

    def _fetch_subtree(self, digest: str) -> None:
        """The object, and when it is a tree the tree objects below it, into the cache (one
        request; the server sends the top few MiB of the tree breadth-first)."""
        with self.http.stream("GET", f"/objects/{digest}/subtree") as response:
            parser = FrameParser(max_object=1 << 40)
            for block in response.iter_bytes(1 << 20):
                for found, data in parser.feed(block):
                    if found == digest or self.cache.missing([found]):
                        self._cache_put(found, data)
            parser.close()
        with self._lock:
            self.download_requests += 1

    def get(self, digest: str, verify: bool = True) -> bytes:
        try:
            return self.cache.get(digest, verify=verify)
        except ObjectNotFoundError:
            pass
        self._fetch_subtree(digest)
        return self.cache.get(digest, verify=False)  # verified as it arrived

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        try:
            return self.cache.read_into(digest, out_fd, out_offset)
        except ObjectNotFoundError:
            self._fetch_one(digest)
            return self.cache.read_into(digest, out_fd, out_offset)

    def _fetch_group(self, digests: list[str]) -> list[str]:
        """Stream a batch of objects into the cache; returns the chunks the chunk lists among
        them name."""
        chunks: list[str] = []
        with self.http.stream("POST", "/objects/fetch", json={"digests": digests}) as response:
            parser = FrameParser(max_object=1 << 40)
            for block in response.iter_bytes():
                for digest, data in parser.feed(block):
                    self._cache_put(digest, data)
                    if data[:17] == b'{"cairn":"chunks"':
                        try:
                            chunks.extend(d for d, _n in chunking.decode_chunk_list(bytes(data)))
                        except (ValueError, KeyError, TypeError):
                            pass  # a blob that merely looks like a chunk list
            parser.close()
        with self._lock:
            self.download_requests += 1
        return chunks

    def _fetch_many(self, digests: list[str]) -> list[str]:
        """Fetch what the cache lacks; returns the chunks of the chunk lists fetched."""
        lacking = self.cache.missing(digests) if digests else set()
        todo = [d for d in digests if d in lacking]
        every: list[str] = []
        while todo:
            size = max(1, min(FETCH_GROUP, -(-len(todo) // self.parallel)))
            groups = [todo[i : i + size] for i in range(0, len(todo), size)]
            found: list[str] = []
            if len(groups) == 1:
                found = self._fetch_group(groups[0])
            else:
                with ThreadPoolExecutor(self.parallel, thread_name_prefix="cairn-down") as pool:
                    for chunks in pool.map(self._fetch_group, groups):
                        found.extend(chunks)
            wanted = list(dict.fromkeys(found))
            every.extend(wanted)
            lacking = self.cache.missing(wanted) if wanted else set()
            todo = [d for d in wanted if d in lacking]
        return every

    def warm(self, digests: list[str]) -> None:
        """Fetch into the cache every object (and chunk) a download will read, in parallel
        batches, then look them all up at once."""
        wanted = list(dict.fromkeys(digests))
        chunks = self._fetch_many(wanted)
        self.cache.sync()
        with self._lock:
            self._cache_new = 0
        self.cache.warm(wanted + chunks)

    # --- not over HTTP --------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        raise StoreError(
            "objects cannot be deleted through the server; garbage collection runs on the "
            "server (`cairn gc` with the server's store)"
        )

    def all_digests(self) -> Iterable[str]:
        raise StoreError(
            "the server's objects cannot be listed through its API; run this on the server "
            "against its store"
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._batch, self._batch_size, self._deferred = [], 0, []
            self._staged.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()


__all__ = ["RemoteObjectStore"]
