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

import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from cairn import config
from cairn.client.http import Http
from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, NotFoundError, ObjectNotFoundError, StoreError
from cairn.objects import chunking, tree
from cairn.objects.packs.local import LocalPackStore
from cairn.wire import OBJECTS_TYPE, FrameParser, frame_header

BATCH_BYTES = 16 << 20  # bytes per upload request
PARALLEL = 4  # upload and download requests in flight
CHECK_BATCH = 10_000  # digests per existence check
FETCH_GROUP = 256  # objects per download request at most
_CACHE_SYNC_BYTES = 256 << 20  # index the cache after this many new bytes
_STRUCTURAL = b'{"cairn":"'
# direct transfers
PACK_BYTES = 16 << 20  # bytes per pack uploaded to the bucket
PACK_OBJECTS = 20_000  # objects per pack at most
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
        self.cache = LocalPackStore(cache_root)
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
        self._deferred: list[tuple[str, bytes]] = []
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
                self._deferred.append((digest, blob))
                return True
            self._batch.append((digest, blob))
            self._batch_size += len(blob)
            full = (
                self._take()
                if self._batch_size >= limit or (direct and len(self._batch) >= PACK_OBJECTS)
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
        if self.direct:
            self._send_pack(batch)
            return
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
                    data = self.cache.get(digest, verify=False)  # cached before: look below it
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
        with self._lock:
            self.downloaded_bytes += len(data)
            self._cache_new += len(data)
            flush = self._cache_new >= _CACHE_SYNC_BYTES
            if flush:
                self._cache_new = 0
        if flush:
            self.cache.sync()

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
        batches, then look them all up at once."""
        wanted = list(dict.fromkeys(digests))
        chunks = self._fetch_many(wanted)
        self.cache.sync()
        with self._lock:
            self._cache_new = 0
        self.cache.warm(wanted + chunks)

    def discard(self) -> None:
        """Drop what was not sent yet (requests in flight complete: the server stores each
        whole or not at all)."""
        with self._lock:
            self._batch, self._batch_size, self._deferred = [], 0, []
            self._staged.clear()

    def generation(self) -> int | None:
        return None  # the server's drops are not counted here: a logger checks again

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
            self._batch, self._batch_size, self._deferred = [], 0, []
            self._staged.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if bucket is not None:
            bucket.close()
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
