"""The bucket pack store: objects packed for object storage, many small objects in one PUT.

One storage key per object (`cairn.objects.keyed.KeyedObjectStore`) makes logging 20,000
small files 20,000 PUTs, and checking them 20,000 HEADs. `BucketPackStore` appends objects to
a pack held in memory and uploads it as one object when it reaches ``PACK_TARGET`` bytes (or
at ``sync``), with a small index object beside it (layout and format:
`cairn.objects.packs.format`). A pack a client uploaded on a signed URL is adopted by the
server (`cairn.objects.packs.adopt`: copied to packs/, verified, indexed).

Write ordering (the invariant of docs/architecture.md holds): a pack's index is uploaded only
after the pack itself *and* every pack sealed before it (children are sealed before the trees
that list them), so an object listed by any index is complete, and so is everything it refers
to. ``sync`` waits for every upload. A crash leaves at most unindexed packs: garbage.

Lookups never go to the network per object: every index object is read once into a local SQLite
cache (`cairn.objects.packs.index`: ``cache_dir/<hash of the URL>/index.db``, or memory), and a
LIST of ``index/`` at open (and when an object is not found) imports the indexes other writers
added since, and forgets the packs whose index is gone (``cairn gc`` deleted them).

Existence checks (``missing``) answer "present" only for objects whose pack's index was seen
on the bucket less than ``VERIFY_AGE`` seconds ago, and always after ``sync``: the check a
logger makes right before committing a version (after its sync) therefore sees an index gc
deleted, however stale this cache is (see docs/architecture.md, "Garbage collection").
Reads are ranged GETs of packs; objects read in pack order (a download, the chunks of a large
file) are read in 4 MiB blocks with read-ahead, so a download is a few large GETs too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cairn.core.digest import hash_bytes
from cairn.core.fileio import pwrite_all
from cairn.errors import CairnError, IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects.packs.format import (
    Entry,
    Location,
    Row,
    decode_index,
    encode_footer,
    encode_index,
    index_key,
    pack_key,
    read_footer,
)
from cairn.objects.packs.index import PackIndex
from cairn.storage.base import Storage

PACK_TARGET = 32 << 20
MAX_UPLOADS = 2  # sealed packs uploading while the next one fills (bounds memory)
BLOCK = 8 << 20
CACHE_BLOCKS = 16  # 128 MiB of pack blocks kept for reads
READ_AHEAD = 4
VERIFY_AGE = 2.0  # seconds: ``missing`` trusts a pack's index seen this recently (see there)
# gc: seconds between deleting index objects and reading the roots once more: more than
# VERIFY_AGE plus the time from a logger's last check to its commit
SETTLE_SECONDS = 10.0
# gc: an unindexed pack is an orphan only past this age (whatever the grace period): a writer
# puts a pack's index right after the pack, and nothing on a bucket says a pack is being written
ORPHAN_AGE = 600.0


class _Upload:
    """A sealed pack on its way to the store."""

    def __init__(self, pack: str, data: bytearray, entries: list[Entry]) -> None:
        self.pack = pack
        self.data = data
        self.size = len(data)
        self.entries = entries
        self.indexed = threading.Event()  # set when its index is up (or it failed)
        self.error: BaseException | None = None


class BucketPackStore:
    """An `ObjectStore` and `PackStore` over any `Storage` that writes objects in packs (see
    the module doc); in practice a bucket."""

    default_settle = SETTLE_SECONDS
    leftover_kind = "uploads"

    def __init__(
        self,
        storage: Storage,
        cache_dir: Path | None = None,
        *,
        pack_target: int = PACK_TARGET,
    ) -> None:
        self.storage = storage
        self.url = storage.url
        self.pack_target = pack_target
        self.where = storage.url
        db_path: Path | None = None
        if cache_dir is not None:
            folder = cache_dir / hashlib.sha256(storage.url.encode()).hexdigest()[:16]
            folder.mkdir(parents=True, exist_ok=True)
            db_path = folder / "index.db"
        self.index = PackIndex(db_path, cache=True)
        self._dropped: dict[str, tuple[int, list[Entry]]] = {}  # gc: index objects it deleted
        self._lock = threading.RLock()
        # writing
        self._buf = bytearray()
        self._buf_pack = uuid.uuid4().hex
        self._buf_entries: list[Entry] = []
        self._pending: dict[str, Location] = {}  # written, not yet in the local index
        self._uploads: list[tuple[_Upload, Future[None]]] = []
        self._in_memory: dict[str, bytearray] = {}  # pack -> bytes, until uploaded
        self._mem_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_UPLOADS)
        self._upload_pool: ThreadPoolExecutor | None = None
        self._last_upload: _Upload | None = None
        # reading
        self._pack_sizes: dict[str, int] = {}
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._fetching: dict[tuple[str, int], Future[bytes]] = {}
        self._read_pool: ThreadPoolExecutor | None = None
        self._last_end: dict[str, int] = {}
        self._warm: dict[str, Location] = {}
        self._refreshed = float("-inf")
        self._refresh_lock = threading.Lock()
        self._verified: dict[str, float] = {}  # pack -> when its index was last seen (monotonic)
        self.stats = {"pack_puts": 0, "index_puts": 0, "range_gets": 0, "block_gets": 0}
        self.refresh()

    def __repr__(self) -> str:
        return f"<BucketPackStore {self.url}>"

    # --- the index ---------------------------------------------------------------------------
    def refresh(self, max_age: float | None = None) -> int:
        """Import the index objects this cache has not seen (written by other processes).
        Returns how many were imported. With ``max_age``, the store is listed only when the
        last listing is older than that many seconds."""
        asked = time.monotonic()
        if max_age is not None and asked - self._refreshed < max_age:
            return 0
        with self._refresh_lock:
            if self._refreshed >= asked:
                return 0  # another thread listed the store since we asked
            started = time.monotonic()
            # read what is known *before* listing: a pack recorded meanwhile had its index
            # put before, so only a pack known before the LIST and not listed is gone
            known = self.index.known_packs()
            listed = set()
            for key in self.storage.list("index/"):
                name = key[len("index/") :]
                if name.endswith(".idx"):
                    listed.add(name[:-4])
            vanished = known - listed
            if vanished:  # garbage-collected: forget them before importing what replaced them
                self.forget_packs(vanished)
            todo = [index_key(p) for p in sorted(listed - known)]
            if todo:
                pool = self._readers()
                for data in pool.map(self.storage.get, todo):
                    try:
                        pack, size, entries = decode_index(data)
                    except (ValueError, KeyError) as exc:
                        raise StoreError(f"a pack index in {self.url} is damaged ({exc})") from None
                    self._record(pack, size, entries)
            self._refreshed = started
        return len(todo)

    def forget_packs(self, packs: Iterable[str]) -> None:
        """Forget packs whose index is gone from the store (garbage-collected). Objects they
        held that another known pack holds too are located in that pack again (its index is
        read again); the others count as missing."""
        gone = set(packs)
        while gone:
            others = self.index.forget_packs(sorted(gone))
            with self._lock:
                self._warm = {d: loc for d, loc in self._warm.items() if loc[0] not in gone}
                for key in [k for k in self._blocks if k[0] in gone]:
                    del self._blocks[key]
                for pack in gone:
                    self._pack_sizes.pop(pack, None)
                    self._last_end.pop(pack, None)
                    self._verified.pop(pack, None)
            others -= gone
            gone = set()
            for pack in sorted(others):  # they locate the objects the forgotten packs did
                try:
                    _, size, entries = decode_index(self.storage.get(index_key(pack)))
                except ObjectNotFoundError:
                    gone.add(pack)  # gone as well
                    continue
                except (ValueError, KeyError) as exc:
                    raise StoreError(f"a pack index in {self.url} is damaged ({exc})") from None
                self._record(pack, size, entries)

    def _record(self, pack: str, size: int, entries: list[Entry]) -> None:
        self.index.record_pack(pack, size, entries)
        self._pack_sizes[pack] = size

    def pack_members(self, packs: Iterable[str]) -> dict[str, set[str]]:
        """Every object each pack holds (by its index), including those found in another."""
        return self.index.members(packs)

    def index_entries(self, packs: list[str]) -> list[list[Entry] | None]:
        """The entries of each pack's index object, read from the store (in parallel); None
        for a pack whose index is gone."""

        def entries(pack: str) -> list[Entry] | None:
            try:
                return decode_index(self.storage.get(index_key(pack)))[2]
            except ObjectNotFoundError:
                return None
            except (ValueError, KeyError) as exc:
                raise StoreError(f"a pack index in {self.url} is damaged ({exc})") from None

        return list(self._readers().map(entries, packs))

    def read_at(self, pack: str, offset: int, length: int) -> bytes:
        """Bytes of a pack, as its index entry says (one ranged GET)."""
        return self._range(pack, offset, length)

    def _lookup(self, digests: list[str]) -> dict[str, Location]:
        found: dict[str, Location] = {}
        with self._lock:
            for d in digests:
                loc = self._pending.get(d)
                if loc is not None:
                    found[d] = loc
        found.update(self.index.locate(d for d in digests if d not in found))
        return found

    def _locate(self, digest: str) -> Location:
        loc = self._warm.get(digest) or self._lookup([digest]).get(digest)
        if loc is None and time.monotonic() - self._refreshed > 1.0:
            self.refresh()  # written by another process since we last looked
            loc = self._lookup([digest]).get(digest)
        if loc is None:
            raise ObjectNotFoundError(
                f"object {digest} is not in the store {self.url}; the store may have been "
                "damaged or garbage-collected, log the data again",
                digest,
            )
        return loc

    def locate(self, digests: Iterable[str]) -> dict[str, Location]:
        """Where objects are: digest -> (pack id, offset, length), for those this machine's
        index lists (see ``refresh`` for objects other processes wrote since)."""
        return self._lookup(list(dict.fromkeys(digests)))

    def has(self, digest: str) -> bool:
        return bool(self._lookup([digest]))

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests not in the store. An object counts as present only when its pack's
        index was seen on the store less than ``VERIFY_AGE`` seconds ago, or since the last
        ``sync`` (one HEAD per pack, in parallel); a pack whose index is gone is forgotten.
        So the check a logger makes after its sync, right before committing, sees every pack
        a garbage collection deleted before it."""
        wanted = list(set(digests))
        found = self._lookup(wanted)
        for _ in range(8):  # a forgotten pack's objects may be found in another pack
            with self._lock:
                pending = {loc[0] for loc in self._pending.values()}
            now = time.monotonic()
            stale = {
                loc[0]
                for loc in found.values()
                if loc[0] not in pending and now - self._verified.get(loc[0], -1e18) >= VERIFY_AGE
            }
            if not stale:
                break
            gone = self.storage.missing(index_key(p) for p in sorted(stale))
            vanished = {k[len("index/") : -len(".idx")] for k in gone}
            with self._lock:
                for pack in stale - vanished:
                    self._verified[pack] = now
            if not vanished:
                break
            self.forget_packs(vanished)
            found = self._lookup(wanted)
        return set(wanted) - found.keys()

    def warm(self, digests: list[str]) -> None:
        """Look many objects up at once ahead of reading them (downloads); they are then read
        in blocks with read-ahead."""
        self._warm = self._lookup(digests)
        # start fetching the first blocks those objects need, in the order they are wanted
        first: dict[tuple[str, int], None] = {}
        for d in digests:
            loc = self._warm.get(d)
            if loc is None:
                continue
            pack, offset, length = loc
            with self._mem_lock:
                if pack in self._in_memory:
                    continue
            if pack == self._buf_pack:
                continue
            for k in range(offset // BLOCK, (offset + max(length, 1) - 1) // BLOCK + 1):
                first[(pack, k)] = None
            if len(first) >= CACHE_BLOCKS // 2:
                break
        pool = self._readers()
        for pack, k in list(first)[: CACHE_BLOCKS // 2]:
            pool.submit(self._block, pack, k)

    def discard(self) -> None:
        """Drop the pack being filled (packs already on their way are uploaded and indexed:
        their objects are whole)."""
        with self._lock:
            for digest, _, _ in self._buf_entries:
                self._pending.pop(digest, None)
            self._buf = bytearray()
            self._buf_entries = []

    def generation(self) -> int | None:
        return None  # drops are index objects gone from the bucket: `missing` asks it

    def all_digests(self) -> Iterator[str]:
        self.sync()
        yield from self.index.digests()

    # --- writing -----------------------------------------------------------------------------
    def put(self, digest: str, data: bytes | memoryview) -> bool:
        """Append ``data`` to the open pack under its (already computed) digest. True when
        bytes were written."""
        self._raise_upload_error()
        with self._lock:
            if digest in self._pending:
                return False
            offset = len(self._buf)
            self._buf += data
            self._buf_entries.append((digest, offset, len(data)))
            self._pending[digest] = (self._buf_pack, offset, len(data))
            if len(self._buf) >= self.pack_target:
                self._seal()
        return True

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[bool]:
        return [self.put(digest, data) for digest, data in items]

    def put_range(self, digest: str, fd: int, offset: int, length: int) -> bool:
        buf = bytearray(length)
        view = memoryview(buf)
        done = 0
        while done < length:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise EOFError(f"source ended before {length} bytes")
            done += n
        return self.put(digest, view)

    def add(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.missing([digest]):
            self.put(digest, data)
        return digest

    def _seal(self) -> None:
        """Hand the open pack to an uploader (caller holds the lock). Blocks while
        MAX_UPLOADS packs are already on their way."""
        if not self._buf_entries:
            return
        self._buf += encode_footer(self._buf_pack, len(self._buf), self._buf_entries)
        upload = _Upload(self._buf_pack, self._buf, self._buf_entries)
        with self._mem_lock:
            self._in_memory[upload.pack] = upload.data
        self._pack_sizes[upload.pack] = len(upload.data)
        self._buf = bytearray()
        self._buf_pack = uuid.uuid4().hex
        self._buf_entries = []
        previous, self._last_upload = self._last_upload, upload
        self._record_uploaded()
        self._slots.acquire()
        if self._upload_pool is None:
            self._upload_pool = ThreadPoolExecutor(MAX_UPLOADS, thread_name_prefix="cairn-pack")
        future = self._upload_pool.submit(self._upload, upload, previous)
        self._uploads.append((upload, future))

    def _record_uploaded(self) -> None:
        """Record the packs whose upload finished (in order, up to the first still on its way
        or failed) in the local index, so that a log of millions of objects does not hold
        every object's location until its end (caller holds the lock)."""
        while self._uploads:
            upload, future = self._uploads[0]
            if not future.done() or upload.error is not None or future.exception() is not None:
                return
            self._uploads.pop(0)
            self._record(upload.pack, upload.size, upload.entries)
            for digest, _, _ in upload.entries:
                self._pending.pop(digest, None)

    def _upload(self, upload: _Upload, previous: _Upload | None) -> None:
        try:
            try:
                self.storage.put(pack_key(upload.pack), memoryview(upload.data))
                self.stats["pack_puts"] += 1
                # an index is published only after every pack sealed before it: trees are
                # sealed after the objects they list
                if previous is not None:
                    previous.indexed.wait()
                    if previous.error is not None:
                        raise StoreError(f"an earlier pack failed to upload: {previous.error}")
                index = encode_index(upload.pack, upload.size, upload.entries)
                self.storage.put(index_key(upload.pack), index)
                self.stats["index_puts"] += 1
                # readers now find the objects in the store: let the memory go
                with self._mem_lock:
                    self._in_memory.pop(upload.pack, None)
                upload.data = bytearray()
            except BaseException as exc:
                upload.error = exc
                raise
            finally:
                upload.indexed.set()
        finally:
            self._slots.release()

    def _raise_upload_error(self) -> None:
        with self._lock:
            for upload, future in self._uploads:
                if future.done() and upload.error is not None:
                    self._forget_failed()
                    raise _upload_failed(self.url, upload.error)

    def _forget_failed(self) -> None:
        """Drop every pack not uploaded (caller holds the lock): their objects count as
        missing again, so a retry stores them."""
        for upload, future in self._uploads:
            future.exception()  # wait for it to finish either way
            for digest, _, _ in upload.entries:
                self._pending.pop(digest, None)
            with self._mem_lock:
                self._in_memory.pop(upload.pack, None)
        self._uploads = []
        for digest, _, _ in self._buf_entries:
            self._pending.pop(digest, None)
        self._buf = bytearray()
        self._buf_entries = []
        self._last_upload = None

    def sync(self) -> None:
        """Upload the open pack and wait until every pack and index is in the store; then
        record them in the local index."""
        with self._lock:
            self._seal()
            uploads = list(self._uploads)
        error: BaseException | None = None
        for upload, future in uploads:
            try:
                future.result()
            except BaseException as exc:
                error = error or upload.error or exc
        with self._lock:
            if error is not None:
                self._forget_failed()
                raise _upload_failed(self.url, error)
            for upload, _ in uploads:
                self._record(upload.pack, upload.size, upload.entries)
                for digest, _, _ in upload.entries:
                    self._pending.pop(digest, None)
            self._uploads = [u for u in self._uploads if u not in uploads]
            # the next existence check (a logger's last one before committing) asks the store
            self._verified.clear()
        self.storage.sync()

    # --- packs written elsewhere (the server's uploads) ----------------------------------------
    def publish(self, pack: str, size: int, entries: list[Entry]) -> None:
        """Index a pack that is already complete in the store: upload its index object, then
        record it in the local index. The caller put the pack (and every pack its objects
        refer to) first."""
        self.storage.put(index_key(pack), encode_index(pack, size, entries))
        self.stats["index_puts"] += 1
        self._record(pack, size, entries)

    def open_upload(self) -> BucketUpload:
        """A set of objects written as packs of their own and indexed only at ``commit``
        (one server upload request)."""
        return BucketUpload(self)

    # --- garbage collection (`cairn.objects.gc` over the `PackStore` protocol) ------------------
    @contextlib.contextmanager
    def gc_lock(self) -> Iterator[None]:
        """One gc at a time on this machine (two gcs on one bucket are safe, only wasteful:
        each re-reads the roots after deleting indexes and before deleting packs)."""
        folder = Path(os.environ.get("TMPDIR") or "/tmp")
        name = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        fd = os.open(folder / f"cairn-gc-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another gc is running on the store {self.where}") from None
            yield
        finally:
            os.close(fd)

    def packs(self) -> dict[str, tuple[int, float]]:
        """Every pack on the bucket: id -> (size, last-modified time)."""
        found: dict[str, tuple[int, float]] = {}
        for key, size, mtime in self.storage.list_info("packs/"):
            name = key[len("packs/") :]
            if name.endswith(".pack") and "/" not in name:
                found[name[: -len(".pack")]] = (size, mtime)
        return found

    def snapshot(self, grace_seconds: float) -> list[Row]:
        """Every index the bucket lists now (imported into the local cache); for the packs
        old enough to be candidates, every entry of their index object (an object may be in
        several packs; the cache locates it in one)."""
        self.refresh()
        files = self.packs()
        now = time.time()
        cached = self.index.rows()
        indexed = self.index.known_packs()
        old = sorted(p for p in indexed if p in files and now - files[p][1] >= grace_seconds)
        candidates = set(old)
        rows = [r for r in cached if r[1] not in candidates]
        for pack, got in zip(old, self.index_entries(old), strict=True):
            if got is not None:  # None: deleted meanwhile (another gc), not a candidate
                rows.extend((d, pack, o, n) for d, o, n in got)
        return rows

    def flush_moved(self) -> int:
        with self._lock:
            new = {loc[0] for loc in self._pending.values()}
        self.sync()  # the new packs and their indexes are on the bucket
        return sum(self._pack_size(p) for p in new)

    def drop_packs(self, packs: list[str]) -> None:
        """Delete the packs' index objects (every process's existence checks see that) and
        forget them here; their entries are kept for ``restore_packs``."""
        for pack in packs:
            try:
                _, size, entries = decode_index(self.storage.get(index_key(pack)))
            except ObjectNotFoundError:
                continue  # another gc dropped it
            self._dropped[pack] = (size, entries)
            self.storage.delete(index_key(pack))
        self.forget_packs(packs)

    def restore_packs(self, packs: list[str], rows: list[Row]) -> None:
        """Put dropped packs' index objects back as they were (the packs are kept)."""
        for pack in dict.fromkeys(packs):
            kept = self._dropped.pop(pack, None)
            if kept is not None:
                self.publish(pack, kept[0], kept[1])

    def delete_pack(self, pack: str) -> bool:
        self.storage.delete(pack_key(pack))
        return True

    def orphans(
        self, files: dict[str, tuple[int, float]], indexed: set[str], now: float, grace: float
    ) -> list[str]:
        limit = max(grace, ORPHAN_AGE)
        old = [p for p, (_, mtime) in files.items() if p not in indexed and now - mtime >= limit]
        if not old:
            return []
        gone = self.storage.missing(index_key(p) for p in old)  # indexed since the snapshot?
        return sorted(p for p in old if index_key(p) in gone)

    def pack_entries(self, pack: str) -> list[Entry] | None:
        key = pack_key(pack)
        try:
            size = self.storage.size(key)
            found = read_footer(lambda offset, n: self.storage.get_range(key, offset, n), size)
        except ObjectNotFoundError:
            return None
        return found[2] if found is not None else None

    def index_pack(self, pack: str, size: int, entries: list[Entry]) -> None:
        self.publish(pack, size, entries)

    def leftovers(self, now: float, grace_seconds: float) -> list[tuple[str, int]]:
        """Clients' direct uploads never committed (a commit deletes its upload)."""
        return [
            (key, size)
            for key, size, mtime in self.storage.list_info("uploads/")
            if now - mtime >= grace_seconds
        ]

    def remove_leftover(self, name: str) -> bool:
        self.storage.delete(name)
        return True

    def delete(self, digest: str) -> None:
        """Forget an object in this machine's index (its bytes stay in its pack until a
        garbage collection rewrites the pack)."""
        with self._lock:
            self._warm.pop(digest, None)
            self._pending.pop(digest, None)
        self.index.remove(digest)

    def close(self) -> None:
        try:
            self.sync()
        finally:
            for pool in (self._upload_pool, self._read_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._upload_pool = self._read_pool = None
            self.index.close()

    # --- reading -----------------------------------------------------------------------------
    def _readers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._read_pool is None:
                self._read_pool = ThreadPoolExecutor(8, thread_name_prefix="cairn-read")
            return self._read_pool

    def _pack_size(self, pack: str) -> int:
        size = self._pack_sizes.get(pack)
        if size is None:
            known = self.index.pack_size(pack)
            size = known if known is not None else self.storage.size(pack_key(pack))
            self._pack_sizes[pack] = size
        return size

    def _range(self, pack: str, offset: int, length: int) -> bytes:
        data = self.storage.get_range(pack_key(pack), offset, length)
        if len(data) != length:
            raise ObjectNotFoundError(
                f"pack {pack} in {self.url} is shorter than its index says; the store is "
                "damaged, log the data again",
                pack,
            )
        return data

    def _block(self, pack: str, n: int) -> Future[bytes]:
        """The future of block ``n`` of a pack (cached, being fetched, or fetched now)."""
        key = (pack, n)
        with self._lock:
            data = self._blocks.get(key)
            if data is not None:
                self._blocks.move_to_end(key)
                done: Future[bytes] = Future()
                done.set_result(data)
                return done
            fut = self._fetching.get(key)
            if fut is not None:
                return fut
            fut = Future()
            self._fetching[key] = fut
        try:
            start = n * BLOCK
            data = self._range(pack, start, min(BLOCK, self._pack_size(pack) - start))
            self.stats["block_gets"] += 1
        except BaseException as exc:
            with self._lock:
                self._fetching.pop(key, None)
            fut.set_exception(exc)
            return fut
        with self._lock:
            self._fetching.pop(key, None)
            self._blocks[key] = data
            while len(self._blocks) > CACHE_BLOCKS:
                self._blocks.popitem(last=False)
        fut.set_result(data)
        return fut

    def _read_ahead(self, pack: str, n: int) -> None:
        last = (self._pack_size(pack) - 1) // BLOCK
        pool = self._readers()
        for k in range(n + 1, min(n + READ_AHEAD, last) + 1):
            with self._lock:
                if (pack, k) in self._blocks or (pack, k) in self._fetching:
                    continue
            pool.submit(self._block, pack, k)

    def _read(self, digest: str) -> bytes:
        loc = self._locate(digest)
        try:
            return self._read_at(digest, loc)
        except ObjectNotFoundError:
            # a garbage collection may have rewritten the pack since this cache was filled:
            # if its index is gone, forget it, list the store again and read the new copy
            if not self.storage.missing([index_key(loc[0])]):
                raise
            self.forget_packs([loc[0]])
            self.refresh()
            again = self._locate(digest)
            if again == loc:
                raise
            return self._read_at(digest, again)

    def _read_at(self, digest: str, loc: Location) -> bytes:
        pack, offset, length = loc
        with self._mem_lock:
            memory = self._in_memory.get(pack)
            if memory is not None:
                return bytes(memory[offset : offset + length])
        with self._lock:
            if pack == self._buf_pack:
                return bytes(self._buf[offset : offset + length])
            previous_end = self._last_end.get(pack)
            self._last_end[pack] = offset + length
            first, last = offset // BLOCK, (offset + length - 1) // BLOCK if length else 0
            cached = all((pack, k) in self._blocks for k in range(first, last + 1))
        sequential = previous_end is not None and abs(offset - previous_end) <= BLOCK
        if not (cached or sequential or digest in self._warm):
            self.stats["range_gets"] += 1
            return self._range(pack, offset, length)
        if length == 0:
            return b""
        self._read_ahead(pack, last)
        parts = []
        for k in range(first, last + 1):
            block = self._block(pack, k).result()
            lo = max(offset - k * BLOCK, 0)
            hi = min(offset + length - k * BLOCK, len(block))
            parts.append(block[lo:hi])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def get(self, digest: str, verify: bool = True) -> bytes:
        data = self._read(digest)
        if verify and hash_bytes(data) != digest:
            raise IntegrityError(
                f"stored object {digest} is corrupt (its bytes hash differently); "
                "log the data that produced it again",
                digest=digest,
            )
        if data.startswith(b'{"cairn":"chunks"') and digest in self._warm:
            # a large file being downloaded: its chunks come next, read them in blocks
            try:
                chunks = [d for d, _ in json.loads(data)["chunks"]]
            except (ValueError, KeyError, TypeError):
                chunks = []
            found = self._lookup(chunks)
            with self._lock:
                self._warm = {**self._warm, **found}
        return data

    def read_into(self, digest: str, out_fd: int, out_offset: int) -> int:
        """Write an object's bytes into ``out_fd`` at ``out_offset`` (unverified: the caller
        hashes what it wrote). Returns the length."""
        data = self._read(digest)
        return pwrite_all(out_fd, data, out_offset)


class BucketUpload:
    """Objects of one server upload request on a `BucketPackStore`: appended to packs held in
    memory, each uploaded when it fills; the packs' indexes are uploaded only by ``commit``,
    in order, so nothing is found before the whole request was stored. ``abort`` deletes the
    packs uploaded so far."""

    def __init__(self, db: BucketPackStore) -> None:
        self.db = db
        self._buf = bytearray()
        self._entries: list[Entry] = []
        self._seen: set[str] = set()
        self._uploaded: list[tuple[str, int, list[Entry]]] = []

    def put(self, digest: str, data: bytes | memoryview) -> bool:
        if digest in self._seen:
            return False
        self._seen.add(digest)
        self._entries.append((digest, len(self._buf), len(data)))
        self._buf += data
        if len(self._buf) >= self.db.pack_target:
            self._flush()
        return True

    def _flush(self) -> None:
        if not self._entries:
            return
        pack = uuid.uuid4().hex
        self._buf += encode_footer(pack, len(self._buf), self._entries)
        self.db.storage.put(pack_key(pack), memoryview(self._buf))
        self.db.stats["pack_puts"] += 1
        self._uploaded.append((pack, len(self._buf), self._entries))
        self._buf = bytearray()
        self._entries = []

    def commit(self) -> None:
        self._flush()
        for pack, size, entries in self._uploaded:
            self.db.publish(pack, size, entries)
        self._uploaded = []

    def abort(self) -> None:
        self._buf = bytearray()
        self._entries = []
        for pack, _, _ in self._uploaded:
            _quietly(self.db.storage.delete, pack_key(pack))
        self._uploaded = []


def _quietly(action: Callable[[str], object], key: str) -> None:
    try:
        action(key)
    except Exception:
        pass  # garbage at worst


def _upload_failed(url: str, error: BaseException) -> CairnError:
    detail = str(error) if isinstance(error, CairnError) else f"{type(error).__name__}: {error}"
    return StoreError(
        f"uploading objects to {url} failed ({detail}); nothing was recorded, log again"
    )


__all__ = ["PACK_TARGET", "BucketPackStore", "BucketUpload"]
