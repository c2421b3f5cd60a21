"""`HttpObjectStore`: the `ObjectStore` contract against a Cairn server (over HTTP).

Uploads: ``missing()`` asks the server in batches; ``put()`` only buffers, and full buffers
(``batch_bytes``, default 16 MiB) are sent as one framed, streamed request each, several at a
time; ``sync()`` sends the rest and waits. At most ``parallel + 1`` buffers exist at once, so
memory stays bounded however much is logged. Tree objects and chunk lists (which refer to other
objects) are held back and sent last, after every object they may refer to is on the server:
the store's invariant (an object that exists implies everything it refers to exists) holds on
the server too, so an interrupted log leaves nothing a later log would wrongly trust.

Downloads: objects are fetched into a local cache (a `LocalPackStore` under
``CAIRN_DIR/cache/objects``), verified against their digests; ``warm()`` (called by downloads)
fetches every object a download needs in a few parallel streamed batches, including the chunks
of chunked files, so a second download of the same files reads only the cache.

Direct transfers: when the server's store is a bucket and it offers them (``GET /info``), the
bytes go straight between this machine and the bucket on short-lived signed URLs, never
through the server. A full buffer (16 MiB) becomes a pack PUT on a URL from
``POST /objects/packs``, then committed (the server reads it back and verifies every object);
downloads ask ``POST /objects/locate`` where objects are and read neighbouring ones with one
ranged GET. A URL that expired (the bucket answers 400/401/403) is replaced by a fresh one
and the transfer tried again. ``CAIRN_DIRECT_TRANSFERS=0`` sends everything through the server.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from cairn import config
from cairn.client import cache_limit
from cairn.client.cache_limit import CachePackStore, Eviction, Pins
from cairn.client.deferred import Deferred
from cairn.client.http import Http
from cairn.core.digest import hash_bytes
from cairn.core.fileio import pwrite_all
from cairn.errors import IntegrityError, NotFoundError, ObjectNotFoundError, StoreError
from cairn.objects import chunking, tree
from cairn.wire import OBJECTS_TYPE, FrameParser, frame_header, in_blocks

BATCH_BYTES = 16 << 20  # bytes per upload request
PARALLEL = 4  # upload and download requests in flight
CHECK_BATCH = 10_000  # digests per existence check
FETCH_GROUP = 256  # objects per download request at most
_CACHE_SYNC_BYTES = 256 << 20  # index the cache after this many new bytes
_UNKNOWN_SIZE = 1 << 20  # what an object of unknown size counts for in a download window
_SCAN_MAX = 1_000_000  # entries of a download's order looked at for one window at most
_STRUCTURAL = b'{"cairn":"'
# direct transfers
PACK_BYTES = 16 << 20  # bytes per pack uploaded to the bucket
PACK_OBJECTS = 20_000  # objects per pack, and per upload request, at most
PACK_UPLOADS = 4  # packs uploading at once (with the one filling: 80 MiB at most)
LOCATE_BATCH = 5_000  # digests per POST /objects/locate
RANGE_GAP = 1 << 20  # objects of a pack closer than this are read with one ranged GET
RANGE_MAX = 8 << 20  # bytes per ranged GET at most (unless one object is larger)
RANGE_PARALLEL = 8  # ranged GETs in flight
URL_REFRESHES = 2  # fresh URLs asked for when the bucket refuses one (expired)
BUCKET_ATTEMPTS = 4  # tries of a bucket request that met a network error or a 5xx
SUBTREE_BUDGET = 8 << 20  # bytes of tree objects fetched ahead, as the server's subtree route
_REFUSED = frozenset({400, 401, 403})

Location = tuple[str, int, int]  # pack, offset, length
Range = tuple[str, int, int, list[tuple[str, int, int]]]  # pack, start, end, objects


class _Download:
    """What the downloads in progress still need from the cache (a capped cache only).

    ``order`` lists what they read (blobs, chunk lists, chunks), in the order they are
    placed; objects are fetched a window at a time and each pack is pinned while it holds an
    object not read yet, so the cache holds about the window plus what other processes pin,
    however large the download."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # object -> bytes, where known
        self.chunk_lists: set[str] = set()
        self.order: list[str] = []
        self.position: dict[str, int] = {}
        self.fetched: set[str] = set()  # fetched, or found in the cache
        self.remaining: dict[str, int] = {}  # object -> reads left
        self.pack_of: dict[str, str] = {}  # object not read yet -> the pack holding it
        self.refs: dict[str, int] = {}  # pack -> objects not read yet in it
        # the windows fetched: start -> [end, middle]; reading past a window's middle fetches
        # the window after it (several files are written at once: one stream each)
        self.starts: list[int] = []  # sorted
        self.unread = 0  # bytes fetched (or found) and not read yet: what the download pins
        self.windows: dict[int, list[int]] = {}
        self.ahead: threading.Thread | None = None  # fetching the next window
        self.implicit = False  # begun by a warm() outside download()

    def add(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self.remaining[digest] = self.remaining.get(digest, 0) + 1
            if digest not in self.position:
                self.position[digest] = len(self.order)
                self.order.append(digest)


def _structural(data: bytes) -> bool:
    """A tree, page index or chunk list (a blob that looks like one is treated alike: it is
    merely sent last)."""
    return data[: len(_STRUCTURAL)] == _STRUCTURAL


class HttpObjectStore:
    def __init__(
        self,
        http: Http,
        cache_root: Path,
        *,
        batch_bytes: int | None = None,
        parallel: int = PARALLEL,
        direct: bool | None = None,
    ) -> None:
        self.http = http
        self.cache = CachePackStore(cache_root)
        #: the cap of the download cache in bytes (CAIRN_CACHE_MAX), None: no limit
        self.cache_limit = cache_limit.limit_for(cache_root)
        limit = self.cache_limit
        #: new bytes after which the cache is indexed (and, when capped, kept under its cap)
        self.cache_sync_bytes = (
            _CACHE_SYNC_BYTES if limit is None else max(1 << 20, min(limit // 8, _CACHE_SYNC_BYTES))
        )
        #: bytes a capped download fetches ahead of what it places
        self.window_bytes = 0 if limit is None else max(1 << 20, limit // 4)
        self._pins = Pins(cache_root)
        self._session: _Download | None = None
        self._sessions = 0  # downloads in progress (nested or in threads)
        self._window_lock = threading.Lock()
        self._filling = False  # a window is being fetched (its packs stay pinned until placed)
        self._written_pinned: set[str] = set()  # packs pinned because this process wrote them
        self.evictions: list[Eviction] = []  # this store's, newest last
        self.windows = 0  # windows a capped download fetched (counters, as those below)
        self.windows_ahead = 0  # of which in the background, ahead of the files written
        explicit = batch_bytes or config.upload_batch_bytes()
        self.batch_bytes = explicit or BATCH_BYTES
        self.pack_bytes = explicit or PACK_BYTES
        self.max_pack_bytes = 1 << 62  # what the server accepts per pack (GET /info)
        self.parallel = parallel
        self._direct = direct
        self._lock = threading.Lock()
        self._mode_lock = threading.Lock()
        self._batch: list[tuple[str, bytes]] = []
        self._batch_size = 0
        self._deferred = Deferred()
        self._staged: set[str] = set()  # put since the last sync
        self._inflight: list[Future[None]] = []
        self._slots: threading.BoundedSemaphore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._bucket_client: httpx.Client | None = None
        self._error: BaseException | None = None
        self._cache_new = 0
        # counters, for benchmarks and tests (transfers count whichever way the bytes went)
        self.upload_requests = 0
        self.uploaded_bytes = 0
        self.download_requests = 0
        self.downloaded_bytes = 0
        self.bucket_requests = 0  # direct transfers: requests to the bucket
        self.url_refreshes = 0  # signed URLs replaced because the bucket refused them

    def __repr__(self) -> str:
        return f"HttpObjectStore({self.http.origin!r})"

    # --- the transfer mode -----------------------------------------------------------------------
    @property
    def direct(self) -> bool:
        """Whether objects go straight to and from the server's bucket (asked once)."""
        if self._direct is None:
            with self._mode_lock:
                if self._direct is None:
                    self._direct = self._ask_direct()
        return self._direct

    def _ask_direct(self) -> bool:
        if not config.direct_transfers():
            return False
        try:
            info = self.http.json("GET", "/info", retry=True)
        except NotFoundError:  # a server from before direct transfers
            return False
        objects = (info or {}).get("objects") or {}
        largest = objects.get("max_pack_bytes")
        if isinstance(largest, int) and largest > 0:
            self.max_pack_bytes = largest
            self.pack_bytes = min(self.pack_bytes, largest)
        return bool(objects.get("direct"))

    # --- existence ------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        return not self.missing([digest])

    def missing(self, digests: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(digests))
        with self._lock:
            ask = [d for d in wanted if d not in self._staged]
        return self._ask_missing(ask)

    def _ask_missing(self, ask: list[str]) -> set[str]:
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
    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]:
        return [self.put(digest, data) for digest, data in items]

    def put(self, digest: str, data: bytes | memoryview) -> bool:
        self._raise_failure()
        direct = self.direct
        limit = self.pack_bytes if direct else self.batch_bytes
        with self._lock:
            if digest in self._staged:
                return False
            self._staged.add(digest)
            blob = bytes(data)  # the caller may reuse its buffer
            if _structural(blob):
                self._deferred.add(digest, blob)
                return True
            self._batch.append((digest, blob))
            self._batch_size += len(blob)
            full = (
                self._take()
                if self._batch_size >= limit or len(self._batch) >= PACK_OBJECTS
                else None
            )
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
        workers = PACK_UPLOADS if self.direct else self.parallel
        with self._lock:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(workers + 1)
            slots = self._slots
        slots.acquire()  # bounded memory: wait while enough batches are in flight
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cairn-up")
                future = self._pool.submit(self._send, batch)
                self._inflight.append(future)
        except BaseException:
            slots.release()
            raise
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        if self._slots is not None:
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
        server stores a batch entirely or not at all). In direct mode: one pack to the
        bucket."""
        digests = [d for d, _ in batch]  # _send_pack empties the batch
        if self.direct:
            self._send_pack(batch)
        else:
            self._post(batch)
        # stored on the server: the server answers for them now (a long log holds no set of
        # every digest it sent, and what an interrupted log sent is reused by the next)
        with self._lock:
            self._staged.difference_update(digests)

    def _post(self, batch: list[tuple[str, bytes]]) -> None:
        length = sum(len(frame_header(d, len(b))) + len(b) for d, b in batch)

        def body() -> Iterator[bytes]:
            for digest, blob in batch:
                yield frame_header(digest, len(blob))
                yield blob

        self.http.request(
            "POST",
            "/objects",
            content=lambda: in_blocks(body()),
            headers={"Content-Type": OBJECTS_TYPE, "Content-Length": str(length)},
            retry=True,
        )
        with self._lock:
            self.upload_requests += 1
            self.uploaded_bytes += length

    def sync(self) -> None:
        """Send everything put so far and wait until the server has it: data first, then the
        objects that refer to it, in the order they were put."""
        try:
            with self._lock:
                rest = self._take()
            if rest:
                self._submit(rest)
            self._wait()
            with self._lock:
                deferred, self._deferred = self._deferred, Deferred()
            try:
                batch: list[tuple[str, bytes]] = []
                size = 0
                for digest, blob in deferred.items():
                    batch.append((digest, blob))
                    size += len(blob)
                    if size >= self.batch_bytes:
                        self._send(batch)
                        batch, size = [], 0
                if batch:
                    self._send(batch)
            finally:
                deferred.close()
        except BaseException:
            # what was put is not known to be on the server: forget it, so that putting it
            # again sends it (rather than taking it for already on its way)
            with self._lock:
                self._batch, self._batch_size = [], 0
                self._drop_deferred()
                self._staged.clear()
            raise
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

    # --- direct uploads -------------------------------------------------------------------------
    def _send_pack(self, batch: list[tuple[str, bytes]]) -> None:
        """The objects as one pack (or several, past the server's limit per pack), uploaded
        to the bucket and committed. The batch list is emptied (its bytes now live in the
        pack), so memory holds each object once."""
        while batch:
            size = 0
            n = 0
            while n < len(batch) and (n == 0 or size + len(batch[n][1]) <= self.max_pack_bytes):
                size += len(batch[n][1])
                n += 1
            part = batch[:n]
            del batch[:n]
            entries: list[tuple[str, int, int]] = []
            offset = 0
            for digest, blob in part:
                entries.append((digest, offset, len(blob)))
                offset += len(blob)
            data = b"".join(blob for _, blob in part)
            part.clear()
            self._upload_pack(data, entries)

    def _new_slot(self) -> dict[str, Any]:
        answer = self.http.json("POST", "/objects/packs", json={"count": 1}, retry=True)
        slot: dict[str, Any] = answer["packs"][0]
        return slot

    def _upload_pack(
        self, data: bytes, entries: list[tuple[str, int, int]], again: bool = True
    ) -> None:
        slot = self._new_slot()
        refreshed = 0
        while True:
            response = self._bucket_request(
                "PUT", slot["url"], content=data, headers=slot.get("headers") or {}
            )
            if response.status_code < 300:
                break
            if response.status_code in _REFUSED and refreshed < URL_REFRESHES:
                refreshed += 1  # most likely expired: a fresh slot, and upload again
                with self._lock:
                    self.url_refreshes += 1
                slot = self._new_slot()
                continue
            raise _bucket_error("uploading a pack to", response)
        with self._lock:
            self.upload_requests += 1
            self.uploaded_bytes += len(data)
        try:
            self.http.json(
                "POST",
                f"/objects/packs/{slot['id']}/commit",
                json={"entries": [list(e) for e in entries]},
                retry=True,
            )
        except ObjectNotFoundError:
            # nothing to commit: a retried commit whose first attempt went through, or a
            # pack that did not land; send again whatever the server still lacks
            lacking = self._ask_missing([d for d, _, _ in entries])
            if not lacking:
                return
            if not again:
                raise
            keep = [e for e in entries if e[0] in lacking]
            rest: list[tuple[str, int, int]] = []
            at = 0
            for digest, _offset, length in keep:
                rest.append((digest, at, length))
                at += length
            self._upload_pack(b"".join(data[o : o + n] for _, o, n in keep), rest, again=False)

    def _bucket(self) -> httpx.Client:
        with self._lock:
            if self._bucket_client is None:
                # no Cairn key here: the signed URL is the only credential the bucket sees
                self._bucket_client = httpx.Client(
                    timeout=httpx.Timeout(300.0, connect=15.0),
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                    follow_redirects=True,
                )
            return self._bucket_client

    def _bucket_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request to a signed URL, retried on network errors and 5xx answers."""
        client = self._bucket()
        for attempt in range(1, BUCKET_ATTEMPTS + 1):
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt < BUCKET_ATTEMPTS:
                    time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                    continue
                raise StoreError(
                    f"cannot reach the server's bucket at {urlsplit(url).netloc}: {exc}. If "
                    "this machine has no access to it, set CAIRN_DIRECT_TRANSFERS=0 to send "
                    "objects through the server"
                ) from exc
            with self._lock:
                self.bucket_requests += 1
            if response.status_code >= 500 and attempt < BUCKET_ATTEMPTS:
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    # --- direct downloads -----------------------------------------------------------------------
    def _locate(self, digests: list[str]) -> tuple[dict[str, Location], dict[str, str], list[str]]:
        """Where the objects are (pack, offset, length), a signed URL per pack, and the
        objects to fetch through the server instead (their pack also holds objects this
        caller may not read, so the server signs no URL for it)."""
        objects: dict[str, Location] = {}
        urls: dict[str, str] = {}
        through: list[str] = []
        for start in range(0, len(digests), LOCATE_BATCH):
            found = self.http.json(
                "POST",
                "/objects/locate",
                json={"digests": digests[start : start + LOCATE_BATCH]},
                retry=True,
            )
            for digest, (pack, offset, length) in found["objects"].items():
                objects[digest] = (str(pack), int(offset), int(length))
            urls.update(found["packs"])
            through.extend(found.get("fetch") or [])
        return objects, urls, through

    def _fetch_direct(self, digests: list[str], keep: dict[str, bytes] | None = None) -> list[str]:
        """Fetch objects from the bucket into the cache (``keep`` also gets their bytes);
        returns the chunks the chunk lists among them name."""
        if not digests:
            return []
        objects, urls, through = self._locate(digests)
        ranges = _coalesce(objects)
        chunks: list[str] = []
        for start in range(0, len(through), FETCH_GROUP):
            group = through[start : start + FETCH_GROUP]
            chunks.extend(self._fetch_group(group))
            if keep is not None:
                for digest in group:
                    keep[digest] = self.cache.get(digest, verify=False)
        if len(ranges) == 1:
            chunks.extend(self._get_range(ranges[0], urls, keep))
        elif ranges:
            with ThreadPoolExecutor(
                min(RANGE_PARALLEL, len(ranges)), thread_name_prefix="cairn-down"
            ) as pool:
                for found in pool.map(lambda r: self._get_range(r, urls, keep), ranges):
                    chunks.extend(found)
        return chunks

    def _get_range(
        self, span: Range, urls: dict[str, str], keep: dict[str, bytes] | None
    ) -> list[str]:
        pack, start, end, members = span
        body = b""
        if end > start:
            url = urls[pack]
            refreshed = 0
            while True:
                response = self._bucket_request(
                    "GET", url, headers={"Range": f"bytes={start}-{end - 1}"}
                )
                if response.status_code in (200, 206):
                    break
                if response.status_code in _REFUSED and refreshed < URL_REFRESHES:
                    refreshed += 1  # most likely expired: ask where they are again
                    with self._lock:
                        self.url_refreshes += 1
                    _, fresh, _ = self._locate([d for d, _, _ in members])
                    if pack not in fresh:  # moved meanwhile (rewritten by gc)
                        raise ObjectNotFoundError(
                            f"pack {pack} was moved or removed while this download ran (a "
                            "garbage collection on the server); download again",
                            members[0][0],
                        )
                    url = fresh[pack]
                    continue
                raise _bucket_error("downloading from", response)
            body = response.content
            if response.status_code == 200:  # the service sent the whole pack
                body = body[start:end]
            if len(body) != end - start:
                raise StoreError(
                    f"the server's bucket sent {len(body)} bytes of pack {pack} where "
                    f"{end - start} were asked for; download again"
                )
            with self._lock:
                self.download_requests += 1
        chunks: list[str] = []
        for digest, offset, length in members:
            data = body[offset - start : offset - start + length]
            self._cache_put(digest, data)
            if keep is not None:
                keep[digest] = data
            if data[:17] == b'{"cairn":"chunks"':
                try:
                    chunks.extend(d for d, _n in chunking.decode_chunk_list(data))
                except (ValueError, KeyError, TypeError):
                    pass  # a blob that merely looks like a chunk list
        return chunks

    def _fetch_subtree_direct(self, root: str) -> None:
        """The object, and when it is a tree the tree objects below it breadth-first (up to
        SUBTREE_BUDGET bytes), from the bucket into the cache: one locate and a few ranged
        GETs per level of directories."""
        frontier = [root]
        fetched = 0
        first = True
        while frontier:
            lacking = self.cache.missing(frontier)
            got: dict[str, bytes] = {}
            try:
                self._fetch_direct([d for d in frontier if d in lacking], got)
            except ObjectNotFoundError:
                if first:
                    raise
                return  # read later, one by one, with the error they deserve
            first = False
            below: list[str] = []
            for digest in frontier:
                data = got.get(digest)
                if data is None and digest not in lacking:
                    with contextlib.suppress(ObjectNotFoundError):  # unless evicted meanwhile
                        data = self.cache.get(digest, verify=False)  # cached before
                if data is None:
                    continue
                fetched += len(data)
                if fetched >= SUBTREE_BUDGET:
                    return
                below.extend(_subtrees(data))
            frontier = list(dict.fromkeys(below))

    # --- downloads ------------------------------------------------------------------------------
    def _cache_put(self, digest: str, data: bytes | bytearray, recheck: bool = True) -> None:
        if hash_bytes(data) != digest:
            if recheck and not self.direct:
                # Streams are not verified on the server (the client does it); ask for the
                # object alone, which the server verifies: damage in transit heals, and a
                # damaged stored copy is forgotten there, so logging the data again mends it.
                self._fetch_one(digest, recheck=False)
                return
            raise IntegrityError(
                f"object {digest} is corrupt: the server sent bytes that hash to "
                f"{hash_bytes(data)}; its store is damaged, log the data that produced it again",
                digest=digest,
            )
        self.cache.put(digest, memoryview(data))
        # the pack being written is pinned from its start: no process evicts it half-made
        pack = self.cache.current_pack()
        if pack is not None and pack not in self._pins.packs:
            self._pins.add([pack])
            with self._lock:
                self._written_pinned.add(pack)
        with self._lock:
            self.downloaded_bytes += len(data)
            self._cache_new += len(data)
            flush = self._cache_new >= self.cache_sync_bytes
            if flush:
                self._cache_new = 0
        if flush:
            self._flush_cache()

    def _fetch_one(self, digest: str, recheck: bool = True) -> bytes:
        if self.direct:
            got: dict[str, bytes] = {}
            self._fetch_direct([digest], got)
            return got[digest]
        response = self.http.request("GET", f"/objects/{digest}")
        with self._lock:
            self.download_requests += 1
        data = response.content
        self._cache_put(digest, data, recheck)
        return data

    def _fetch_subtree(self, digest: str) -> None:
        """The object, and when it is a tree the tree objects below it, into the cache (one
        request; the server sends the top few MiB of the tree breadth-first)."""
        if self.direct:
            self._fetch_subtree_direct(digest)
            return
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
            data = self.cache.get(digest, verify=verify)
        except ObjectNotFoundError:
            if not self._fetch_window(digest):
                self._fetch_subtree(digest)
            try:
                data = self.cache.get(digest, verify=False)  # verified as it arrived
            except ObjectNotFoundError:  # evicted by another process meanwhile
                data = self._fetch_one(digest)
        self._consumed(digest)
        return data

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        try:
            n = self.cache.read_into(digest, out_fd, out_offset)
        except ObjectNotFoundError:
            if not self._fetch_window(digest):
                self._fetch_one(digest)
            try:
                n = self.cache.read_into(digest, out_fd, out_offset)
            except ObjectNotFoundError:  # evicted by another process meanwhile
                data = self._fetch_one(digest)
                pwrite_all(out_fd, data, out_offset)
                n = len(data)
        self._consumed(digest)
        return n

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
            if self.direct:
                wanted = list(dict.fromkeys(self._fetch_direct(todo)))
                every.extend(wanted)
                lacking = self.cache.missing(wanted) if wanted else set()
                todo = [d for d in wanted if d in lacking]
                continue
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
        batches, then look them all up at once. A capped cache fetches a window ahead of the
        download instead (the rest as the download reaches it)."""
        wanted = list(dict.fromkeys(digests))
        if self.cache_limit is not None:
            self._warm_capped(digests)
            return
        chunks = self._fetch_many(wanted)
        self._flush_cache()
        self.cache.warm(wanted + chunks)

    # --- the capped cache -------------------------------------------------------------------------
    @contextlib.contextmanager
    def download(
        self, sizes: Mapping[str, int] | None = None, chunk_lists: Iterable[str] = ()
    ) -> Iterator[None]:
        """A download in progress: what it needs stays in the cache until it is read (with a
        cap: pinned, fetched a window ahead); when the last one ends the cache is brought
        under its cap. ``sizes`` (object -> bytes) and ``chunk_lists`` say what the objects
        ``warm`` will be given are, where the caller knows."""
        session = self._begin()
        with self._lock:
            if sizes:
                session.sizes.update(sizes)
            session.chunk_lists.update(chunk_lists)
        failed = True
        try:
            yield
            failed = False
        finally:
            try:
                self._end()
            except (OSError, StoreError):
                if not failed:
                    raise

    def _begin(self, *, implicit: bool = False) -> _Download:
        """One more download in progress (they share one session)."""
        with self._lock:
            current = self._session
        if current is not None and current.implicit:
            self._end()  # the download of a warm() outside download() is over
        with self._lock:
            self._sessions += 1
            if self._session is None:
                self._session = _Download()
                self._session.implicit = implicit
            return self._session

    def _end(self) -> None:
        """A download ended; after the last one, nothing stays pinned for it, and the cache is
        brought under its cap."""
        with self._lock:
            self._sessions -= 1
            session = self._session
            if self._sessions > 0 or session is None:
                return
            self._session = None
        ahead = session.ahead
        if ahead is not None:
            ahead.join()  # it pins what it fetches: let it finish first
        with self._lock:
            keep = set(self._written_pinned)  # being written: pinned until indexed
        self._pins.remove(self._pins.snapshot() - keep)
        self._enforce()

    def _warm_capped(self, digests: list[str]) -> None:
        """The first window of a download (the chunk lists first, to know the chunks).
        ``digests`` in the order the download reads them, once per read."""
        wanted = list(dict.fromkeys(digests))
        session = self._session
        if session is None or session.implicit:  # a caller that did not say: one download
            session = self._begin(implicit=True)
        with self._window_lock:
            lacking = self.cache.missing(wanted)
            lists = [d for d in wanted if d in session.chunk_lists]
            fetch_lists = [d for d in lists if d in lacking]
            if fetch_lists:
                self._filling = True
                try:
                    self._fetch_many_flat(fetch_lists)
                finally:
                    self._filling = False
            chunks_of: dict[str, list[tuple[str, int]]] = {}
            for digest in lists:
                try:
                    data = self.cache.get(digest, verify=False)
                except ObjectNotFoundError:
                    data = self._fetch_one(digest)
                chunks_of[digest] = chunking.decode_chunk_list(data)
                session.sizes[digest] = len(data)
            order: list[str] = []
            for digest in digests:
                order.append(digest)
                for chunk, length in chunks_of.get(digest, ()):
                    session.sizes.setdefault(chunk, length)
                    order.append(chunk)
            with self._lock:
                session.add(order)
            self._fill(session, 0, must=None)
        self.cache.warm(list(dict.fromkeys(order)))

    def _fetch_window(self, digest: str) -> bool:
        """A download reached an object it lacks: fetch it and the window after it. False
        when no download in progress needs it."""
        session = self._session
        if session is None or digest not in session.position:
            return False
        with self._window_lock:
            if not self.cache.missing([digest]):
                return True  # another thread fetched it meanwhile
            self._fill(session, session.position[digest], must=digest)
        return True

    def _fill(self, session: _Download, start: int, must: str | None) -> None:
        """Fetch the objects of the download from ``start`` on that the cache lacks, up to
        the window, pin the packs of what is not read yet, and keep the cache under its cap
        (the caller holds the window lock)."""
        # what this download pins stays under half the cap however many files are written at
        # once (each a stream of its own windows); an object it must have is fetched anyway
        window = min(self.window_bytes, 2 * self.window_bytes - session.unread)
        if window <= 0 and must is None:
            return
        batch: list[str] = [] if must is None else [must]
        size = 0
        scanned = 0
        candidates: list[str] = []
        at = start
        order = session.order
        while at < len(order) and size < window and scanned < _SCAN_MAX:
            digest = order[at]
            at += 1
            scanned += 1
            if digest in session.fetched or digest == must:
                continue
            candidates.append(digest)
            size += session.sizes.get(digest, _UNKNOWN_SIZE)
        if at < len(order) and at > start:
            with self._lock:  # reading half of it fetches the window after it
                if start not in session.windows:
                    bisect.insort(session.starts, start)
                session.windows[start] = [at, start + (at - start) // 2]
        self.windows += 1
        lacking = self.cache.missing(candidates) if candidates else set()
        batch.extend(d for d in candidates if d in lacking)
        present = [d for d in candidates if d not in lacking]
        self._need(session, present)  # pinned before fetching: the fetch's evictions spare them
        if batch:
            self._filling = True
            try:
                self._fetch_many_flat(batch)
            finally:
                self._filling = False
            self._need(session, batch)
        self._flush_cache()

    def _need(self, session: _Download, digests: list[str]) -> None:
        """Pin the packs holding these objects of the download (those it has not read)."""
        with self._lock:
            session.fetched.update(digests)
        located = self.cache.packs_by_object(digests) if digests else {}
        with self._lock:
            for digest, pack in located.items():
                old = session.pack_of.get(digest)
                if session.remaining.get(digest, 0) <= 0 or old == pack:
                    continue
                if old is not None:  # fetched again: its old pack was evicted meanwhile
                    session.refs[old] -= 1
                else:
                    session.unread += session.sizes.get(digest, _UNKNOWN_SIZE)
                session.pack_of[digest] = pack
                session.refs[pack] = session.refs.get(pack, 0) + 1
            pinned = {p for p, n in session.refs.items() if n > 0}
        self._pins.add(pinned)

    def _fetch_many_flat(self, digests: list[str]) -> None:
        """Fetch objects into the cache, not the chunks of chunk lists among them."""
        if self.direct:
            self._fetch_direct(digests)
            return
        size = max(1, min(FETCH_GROUP, -(-len(digests) // self.parallel)))
        groups = [digests[i : i + size] for i in range(0, len(digests), size)]
        if len(groups) == 1:
            self._fetch_group(groups[0])
            return
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="cairn-down") as pool:
            for _ in pool.map(self._fetch_group, groups):
                pass

    def _consumed(self, digest: str) -> None:
        """A download read an object: once nothing more needs it, its pack is unpinned."""
        session = self._session
        if session is None:
            return
        self._maybe_read_ahead(session, digest)
        with self._lock:
            left = session.remaining.get(digest)
            if left is None:
                return
            if left > 1:
                session.remaining[digest] = left - 1
                return
            del session.remaining[digest]
            pack = session.pack_of.pop(digest, None)
            if pack is None:
                return
            session.unread -= session.sizes.get(digest, _UNKNOWN_SIZE)
            session.refs[pack] -= 1
            done = session.refs[pack] <= 0
            if done:
                del session.refs[pack]
        if done:
            self._pins.remove([pack])

    def _maybe_read_ahead(self, session: _Download, digest: str) -> None:
        """Past the middle of a window: fetch the window after it in the background, while
        the files of this one are written."""
        position = session.position.get(digest)
        if position is None or not session.starts:
            return
        with self._lock:
            i = bisect.bisect_right(session.starts, position) - 1
            if i < 0:
                return
            start = session.starts[i]
            end, middle = session.windows[start]
            if position < middle or (session.ahead is not None and session.ahead.is_alive()):
                return
            if session.unread >= self.window_bytes:  # enough is waiting to be written
                return
            del session.windows[start]  # its next window is being fetched
            session.starts.pop(i)

            def fetch() -> None:
                with self._window_lock:
                    if self._session is session:
                        self.windows_ahead += 1
                        with contextlib.suppress(Exception):  # a reader that lacks it fetches
                            self._fill(session, end, must=None)

            session.ahead = threading.Thread(target=fetch, name="cairn-ahead", daemon=True)
            session.ahead.start()

    def _flush_cache(self) -> None:
        """Index what was fetched into the cache, and keep it under its cap. The packs being
        indexed are pinned first (from then on another process could evict them); after it,
        only those holding objects a download has not read yet stay pinned."""
        written = self.cache.written_packs()
        self._pins.add(written)
        with self._lock:
            self._written_pinned |= written
            synced = set(self._written_pinned)  # indexed by the sync (later ones: not yet)
        self.cache.sync()
        with self._lock:
            self._cache_new = 0
            session = self._session
            needed = set() if session is None else {p for p, n in session.refs.items() if n > 0}
            release: set[str] = set()
            if not self._filling:  # the window's objects are located: pin only what they need
                release = synced - needed
                self._written_pinned -= release
        self._pins.remove(release)
        self._enforce()

    def _enforce(self) -> None:
        """Evict least recently used packs until the cache fits under its cap (sparing what
        any download in progress needs)."""
        limit = self.cache_limit
        if limit is None or cache_limit.cache_bytes(self.cache.root) <= limit:
            return
        done = cache_limit.evict(
            self.cache, limit, limit=limit, keep=self._pins.snapshot(), pins=self._pins
        )
        if done is not None:
            with self._lock:
                self.evictions.append(done)

    def discard(self) -> None:
        """Drop what was not sent yet (requests in flight complete: the server stores each
        whole or not at all)."""
        with self._lock:
            self._batch, self._batch_size = [], 0
            self._drop_deferred()
            self._staged.clear()

    def _drop_deferred(self) -> None:
        self._deferred.close()
        self._deferred = Deferred()

    def generation(self) -> int | None:
        """The server store's drop count; None when it does not count drops (a bucket), or
        from a server older than the route (a logger then checks everything again)."""
        try:
            data = self.http.json("GET", "/store/generation")
        except NotFoundError:
            return None
        value = data.get("generation") if isinstance(data, dict) else None
        return value if isinstance(value, int) else None

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
            bucket, self._bucket_client = self._bucket_client, None
            self._batch, self._batch_size = [], 0
            self._drop_deferred()
            self._staged.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if bucket is not None:
            bucket.close()
        with self._lock:
            implicit = self._session is not None and self._session.implicit
        with contextlib.suppress(OSError, StoreError):
            if implicit:
                self._end()
            self._flush_cache()
        self._pins.close()
        self.cache.close()


def _coalesce(objects: dict[str, Location]) -> list[Range]:
    """Ranged reads covering the objects: per pack, neighbours closer than RANGE_GAP share a
    read of at most RANGE_MAX bytes (a larger object is read alone)."""
    by_pack: dict[str, list[tuple[str, int, int]]] = {}
    for digest, (pack, offset, length) in objects.items():
        by_pack.setdefault(pack, []).append((digest, offset, length))
    spans: list[Range] = []
    for pack in sorted(by_pack):
        members = sorted(by_pack[pack], key=lambda m: m[1])
        current: Range | None = None
        for digest, offset, length in members:
            if current is not None:
                _, start, end, inside = current
                if offset - end <= RANGE_GAP and max(end, offset + length) - start <= RANGE_MAX:
                    inside.append((digest, offset, length))
                    current = (pack, start, max(end, offset + length), inside)
                    spans[-1] = current
                    continue
            current = (pack, offset, offset + length, [(digest, offset, length)])
            spans.append(current)
    return spans


def _subtrees(data: bytes) -> list[str]:
    """The directories (or pages) a tree object lists; nothing for other objects."""
    if not _structural(data):
        return []
    try:
        return [link.digest for link in tree.children(data) if link.kind == "tree"]
    except ValueError:
        return []


def _bucket_error(what: str, response: httpx.Response) -> StoreError:
    text = response.text
    parts = [
        m.group(1).strip()
        for m in (
            re.search(r"<Code>([^<]*)</Code>", text),
            re.search(r"<Message>([^<]*)</Message>", text),
        )
        if m
    ]
    detail = ": ".join(parts) or text.strip()[:200] or response.reason_phrase
    host = urlsplit(str(response.request.url)).netloc
    return StoreError(
        f"{what} the server's bucket ({host}) failed: HTTP {response.status_code} {detail}. "
        "If this machine may not reach the bucket, set CAIRN_DIRECT_TRANSFERS=0 to send "
        "objects through the server"
    )


__all__ = ["HttpObjectStore"]
