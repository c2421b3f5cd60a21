"""Objects packed for object storage: many small objects travel in one PUT.

One storage key per object (`cairn.objects.odb.ObjectDB`) makes logging 20,000 small files
20,000 PUTs, and checking them 20,000 HEADs. `PackedRemoteObjectDB` appends objects to a pack
held in memory and uploads it as one object when it reaches ``PACK_TARGET`` bytes (or at
``sync``), with a small index object beside it. Layout under the store's URL::

    packs/<id>.pack   objects back to back (one PUT)
    index/<id>.idx    one JSON header line, then one 48-byte record per object:
                      32-byte BLAKE3 digest, 8-byte offset, 8-byte length (little-endian)
    uploads/<owner>/<slot>.pack
                      a pack a client uploaded on a signed URL, until the server adopts it
                      (``adopt``: copied to packs/, verified, indexed) and deletes it

Write ordering (the invariant of docs/architecture.md holds): a pack's index is uploaded only
after the pack itself *and* every pack sealed before it (children are sealed before the trees
that list them), so an object listed by any index is complete, and so is everything it refers
to. ``sync`` waits for every upload. A crash leaves at most unindexed packs: garbage.

Lookups never go to the network per object: every index object is read once into a local
SQLite cache (``cache_dir/<hash of the URL>/index.db``, or memory), and a LIST of ``index/``
at open (and when an object is not found) imports the indexes other writers added since, and
forgets the packs whose index is gone (``cairn gc`` deleted them).

Existence checks (``missing``) answer "present" only for objects whose pack's index was seen
on the bucket less than ``VERIFY_AGE`` seconds ago, and always after ``sync``: the check a
logger makes right before committing a version (after its sync) therefore sees an index gc
deleted, however stale this cache is (see docs/architecture.md, "Garbage collection").
Reads are ranged GETs of packs; objects read in pack order (a download, the chunks of a large
file) are read in 4 MiB blocks with read-ahead, so a download is a few large GETs too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cairn.core.digest import format_digest, hash_bytes, new_hasher
from cairn.errors import (
    CairnError,
    IntegrityError,
    InvalidInputError,
    ObjectNotFoundError,
    StoreError,
)
from cairn.storage.base import Storage

PACK_TARGET = 32 << 20
MAX_UPLOADS = 2  # sealed packs uploading while the next one fills (bounds memory)
BLOCK = 8 << 20
CACHE_BLOCKS = 16  # 128 MiB of pack blocks kept for reads
READ_AHEAD = 4
VERIFY_AGE = 2.0  # seconds: ``missing`` trusts a pack's index seen this recently (see there)
_RECORD = struct.Struct("<32sQQ")
_ALGORITHM = "blake3"

Location = tuple[str, int, int]  # pack id, offset, length


def pack_key(pack: str) -> str:
    return f"packs/{pack}.pack"


def index_key(pack: str) -> str:
    return f"index/{pack}.idx"


def encode_index(pack: str, size: int, entries: list[tuple[str, int, int]]) -> bytes:
    header = {
        "cairn": "packindex",
        "v": 1,
        "pack": pack,
        "algorithm": _ALGORITHM,
        "count": len(entries),
        "size": size,
    }
    out = bytearray(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for digest, offset, length in entries:
        out += _RECORD.pack(bytes.fromhex(digest.partition(":")[2]), offset, length)
    return bytes(out)


def decode_index(data: bytes) -> tuple[str, int, list[tuple[str, int, int]]]:
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    if header.get("cairn") != "packindex" or header.get("v") != 1:
        raise ValueError("not a Cairn pack index")
    prefix = header["algorithm"] + ":"
    entries = [
        (prefix + raw.hex(), offset, length) for raw, offset, length in _RECORD.iter_unpack(body)
    ]
    if len(entries) != header["count"]:
        raise ValueError("pack index is truncated")
    return header["pack"], int(header["size"]), entries


class _Upload:
    """A sealed pack on its way to the store."""

    def __init__(self, pack: str, data: bytearray, entries: list[tuple[str, int, int]]) -> None:
        self.pack = pack
        self.data = data
        self.size = len(data)
        self.entries = entries
        self.indexed = threading.Event()  # set when its index is up (or it failed)
        self.error: BaseException | None = None


class PackedRemoteObjectDB:
    """An `ObjectStore` over any `Storage` that writes objects in packs (see module doc)."""

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
        if cache_dir is not None:
            folder = cache_dir / hashlib.sha256(storage.url.encode()).hexdigest()[:16]
            folder.mkdir(parents=True, exist_ok=True)
            db_path = str(folder / "index.db")
        else:
            db_path = ":memory:"
        try:
            self._db = sqlite3.connect(
                db_path, timeout=60, check_same_thread=False, isolation_level=None
            )
            if db_path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, pack TEXT NOT NULL,"
                " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
                "CREATE TABLE IF NOT EXISTS packs (pack TEXT PRIMARY KEY, size INTEGER NOT NULL)"
                " WITHOUT ROWID;"
                # objects a pack holds too, though `objects` locates them in another pack
                "CREATE TABLE IF NOT EXISTS also (pack TEXT NOT NULL, digest TEXT NOT NULL,"
                " PRIMARY KEY (pack, digest)) WITHOUT ROWID;"
                "CREATE INDEX IF NOT EXISTS objects_by_pack ON objects (pack);"
                "CREATE TEMP TABLE IF NOT EXISTS incoming (digest TEXT PRIMARY KEY,"
                " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
            )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the index cache {db_path}: {exc}") from exc
        self._lock = threading.RLock()
        self._db_lock = threading.Lock()
        # writing
        self._buf = bytearray()
        self._buf_pack = uuid.uuid4().hex
        self._buf_entries: list[tuple[str, int, int]] = []
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
        return f"<PackedRemoteObjectDB {self.url}>"

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
            with self._db_lock:
                known = {p for (p,) in self._db.execute("SELECT pack FROM packs")}
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
            batch = sorted(gone)
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    others: set[str] = set()
                    for i in range(0, len(batch), 200):
                        part = batch[i : i + 200]
                        marks = ",".join("?" * len(part))
                        others.update(
                            p
                            for (p,) in self._db.execute(
                                "SELECT DISTINCT a.pack FROM also a JOIN objects o "
                                f"ON o.digest = a.digest WHERE o.pack IN ({marks})",
                                part,
                            )
                        )
                        for table in ("objects", "also", "packs"):
                            self._db.execute(f"DELETE FROM {table} WHERE pack IN ({marks})", part)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
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

    def _record(self, pack: str, size: int, entries: list[tuple[str, int, int]]) -> None:
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM incoming")
                self._db.executemany("INSERT OR IGNORE INTO incoming VALUES (?, ?, ?)", entries)
                self._db.execute(
                    "INSERT OR IGNORE INTO objects SELECT digest, ?, offset, length FROM incoming",
                    (pack,),
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO also SELECT ?, i.digest FROM incoming i "
                    "JOIN objects o ON o.digest = i.digest WHERE o.pack != ?",
                    (pack, pack),
                )
                self._db.execute("DELETE FROM incoming")
                self._db.execute("INSERT OR REPLACE INTO packs VALUES (?, ?)", (pack, size))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._pack_sizes[pack] = size

    def pack_members(self, packs: Iterable[str]) -> dict[str, set[str]]:
        """Every object each pack holds (by its index), including those found in another."""
        wanted = list(dict.fromkeys(packs))
        members: dict[str, set[str]] = {p: set() for p in wanted}
        with self._db_lock:
            for i in range(0, len(wanted), 200):
                batch = wanted[i : i + 200]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT pack, digest FROM objects WHERE pack IN ({marks}) "
                    f"UNION ALL SELECT pack, digest FROM also WHERE pack IN ({marks})",
                    batch + batch,
                ).fetchall()
                for pack, digest in rows:
                    members[pack].add(digest)
        return members

    def index_rows(self) -> tuple[list[tuple[str, str, int, int]], set[str]]:
        """This cache's rows (digest, pack, offset, length: one location per object) and every
        pack it knows (for garbage collection)."""
        with self._db_lock:
            rows = [
                (d, p, int(o), int(n))
                for d, p, o, n in self._db.execute(
                    "SELECT digest, pack, offset, length FROM objects"
                )
            ]
            packs = {p for (p,) in self._db.execute("SELECT pack FROM packs")}
        return rows, packs

    def index_entries(self, packs: list[str]) -> list[list[tuple[str, int, int]] | None]:
        """The entries of each pack's index object, read from the store (in parallel); None
        for a pack whose index is gone."""

        def entries(pack: str) -> list[tuple[str, int, int]] | None:
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
        rest = [d for d in digests if d not in found]
        with self._db_lock:
            for i in range(0, len(rest), 500):
                batch = rest[i : i + 500]
                rows = self._db.execute(
                    "SELECT digest, pack, offset, length FROM objects WHERE digest IN "
                    f"({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                for digest, pack, offset, length in rows:
                    found[digest] = (pack, offset, length)
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

    def all_digests(self) -> Iterator[str]:
        self.sync()
        with self._db_lock:
            rows = self._db.execute("SELECT digest FROM objects ORDER BY digest").fetchall()
        for (digest,) in rows:
            yield digest

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
        upload = _Upload(self._buf_pack, self._buf, self._buf_entries)
        with self._mem_lock:
            self._in_memory[upload.pack] = upload.data
        self._pack_sizes[upload.pack] = len(upload.data)
        self._buf = bytearray()
        self._buf_pack = uuid.uuid4().hex
        self._buf_entries = []
        previous, self._last_upload = self._last_upload, upload
        self._slots.acquire()
        if self._upload_pool is None:
            self._upload_pool = ThreadPoolExecutor(MAX_UPLOADS, thread_name_prefix="cairn-pack")
        future = self._upload_pool.submit(self._upload, upload, previous)
        self._uploads.append((upload, future))

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
    def publish(self, pack: str, size: int, entries: list[tuple[str, int, int]]) -> None:
        """Index a pack that is already complete in the store: upload its index object, then
        record it in the local index. The caller put the pack (and every pack its objects
        refer to) first."""
        self.storage.put(index_key(pack), encode_index(pack, size, entries))
        self.stats["index_puts"] += 1
        self._record(pack, size, entries)

    def adopt(self, staged: str, entries: list[tuple[str, int, int]]) -> tuple[int, int]:
        """Make a pack a client uploaded to the key ``staged`` part of the store, once every
        object ``entries`` lists in it (digest, offset, length) hashes to its digest.

        The staged bytes are first copied (inside the service) to a new pack key nobody else
        can write, and that copy is what gets verified and indexed: whoever uploaded to
        ``staged`` cannot change the bytes afterwards. Only objects the store lacked count as
        stored; a pack holding none is removed. A bad entry raises (IntegrityError,
        InvalidInputError) and leaves nothing. ``staged`` is deleted either way.
        Returns (objects stored, their bytes)."""
        new: dict[str, tuple[str, int, int]] = {}
        try:
            size = self.storage.size(staged)
            ordered = _check_entries(entries, size)
            pack = uuid.uuid4().hex
            key = pack_key(pack)
            _copy(self.storage, staged, key)
            try:
                if self.storage.size(key) != size:  # re-uploaded between the check and the copy
                    raise InvalidInputError(
                        f"the pack uploaded to {staged} changed while it was being committed; "
                        "upload it again on a new URL"
                    )
                _verify(self.storage, key, ordered)
                lacking = self.missing(d for d, _, _ in ordered)
                listed: dict[str, tuple[str, int, int]] = {}
                for digest, offset, length in ordered:
                    listed.setdefault(digest, (digest, offset, length))
                    if digest in lacking and digest not in new:
                        new[digest] = (digest, offset, length)
                if new:
                    # the index lists every object in the pack, also those stored before, so
                    # that whoever decides who may read the pack sees all it holds
                    self.publish(pack, size, list(listed.values()))
                else:
                    self.storage.delete(key)
            except BaseException:
                _quietly(self.storage.delete, key)
                raise
        finally:
            _quietly(self.storage.delete, staged)
        return len(new), sum(n for _, _, n in new.values())

    def open_upload(self) -> PackUpload:
        """A set of objects written as packs of their own and indexed only at ``commit``
        (one server upload request)."""
        return PackUpload(self)

    def delete(self, digest: str) -> None:
        """Forget an object in this machine's index (its bytes stay in its pack until a
        garbage collection rewrites the pack)."""
        with self._lock:
            self._warm.pop(digest, None)
            self._pending.pop(digest, None)
        with self._db_lock:
            self._db.execute("DELETE FROM objects WHERE digest = ?", (digest,))

    def close(self) -> None:
        try:
            self.sync()
        finally:
            for pool in (self._upload_pool, self._read_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._upload_pool = self._read_pool = None
            with self._db_lock:
                self._db.close()

    # --- reading -----------------------------------------------------------------------------
    def _readers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._read_pool is None:
                self._read_pool = ThreadPoolExecutor(8, thread_name_prefix="cairn-read")
            return self._read_pool

    def _pack_size(self, pack: str) -> int:
        size = self._pack_sizes.get(pack)
        if size is None:
            with self._db_lock:
                row = self._db.execute("SELECT size FROM packs WHERE pack = ?", (pack,)).fetchone()
            size = int(row[0]) if row else self.storage.size(pack_key(pack))
            self._pack_sizes[pack] = size
        return size

    def _range(self, pack: str, offset: int, length: int) -> bytes:
        get_range: Callable[[str, int, int], bytes] | None = getattr(
            self.storage, "get_range", None
        )
        if get_range is not None:
            data = get_range(pack_key(pack), offset, length)
        else:
            with self.storage.open(pack_key(pack)) as f:
                f.seek(offset)
                data = f.read(length)
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
        view = memoryview(data)
        while view:
            n = os.pwrite(out_fd, view, out_offset)
            view = view[n:]
            out_offset += n
        return len(data)


class PackUpload:
    """Objects of one upload request on a `PackedRemoteObjectDB`: appended to packs held in
    memory, each uploaded when it fills; the packs' indexes are uploaded only by ``commit``,
    in order, so nothing is found before the whole request was stored. ``abort`` deletes the
    packs uploaded so far."""

    def __init__(self, db: PackedRemoteObjectDB) -> None:
        self.db = db
        self._buf = bytearray()
        self._entries: list[tuple[str, int, int]] = []
        self._seen: set[str] = set()
        self._uploaded: list[tuple[str, int, list[tuple[str, int, int]]]] = []

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


def upload_key(owner: str, slot: str) -> str:
    """Where a client uploads a pack for the server to adopt (see docs/server.md)."""
    return f"uploads/{owner}/{slot}.pack"


def list_info(storage: Storage, prefix: str) -> Iterator[tuple[str, int, float]]:
    """(key, size, last-modified Unix time) of every value under ``prefix``: from the listing
    where the backend reports it (object storage), else from the file (local disk), else the
    time is unknown and reported as now (so nothing is ever found old by it)."""
    listing: Callable[[str], Iterator[tuple[str, int, float]]] | None = getattr(
        storage, "list_info", None
    )
    if listing is not None:
        yield from listing(prefix)
        return
    for key in storage.list(prefix):
        path = storage.local_path(key)
        try:
            if path is not None:
                st = path.stat()
                yield key, st.st_size, st.st_mtime
            else:
                yield key, storage.size(key), time.time()
        except (FileNotFoundError, ObjectNotFoundError):
            continue


def _check_entries(entries: list[tuple[str, int, int]], size: int) -> list[tuple[str, int, int]]:
    """The entries by offset, each inside the pack and none overlapping another."""
    ordered = sorted(entries, key=lambda e: (e[1], e[2]))
    end = 0
    for digest, offset, length in ordered:
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidInputError(
                f"object {digest} at {offset}+{length} lies outside the uploaded pack "
                f"({size} bytes); nothing of it was stored"
            )
        if offset < end:
            raise InvalidInputError(
                f"object {digest} at {offset} overlaps the object before it in the uploaded "
                "pack; nothing of it was stored"
            )
        end = offset + length
    return ordered


def _copy(storage: Storage, src: str, dst: str) -> None:
    copy: Callable[[str, str], None] | None = getattr(storage, "copy", None)
    if copy is not None:
        copy(src, dst)
    else:
        storage.put(dst, storage.get(src))


def _pieces(storage: Storage, key: str) -> Iterator[bytes]:
    """A value front to back in pieces: one streamed GET where the backend can."""
    stream: Callable[[str], Iterator[bytes]] | None = getattr(storage, "iter_bytes", None)
    if stream is not None:
        yield from stream(key)
        return
    with storage.open(key) as f:
        while piece := f.read(4 << 20):
            yield piece


def _verify(storage: Storage, key: str, ordered: list[tuple[str, int, int]]) -> None:
    """Read the pack once, front to back, hashing each listed object (memory stays small)."""
    pieces = _pieces(storage, key)
    buf = memoryview(b"")
    pos = 0  # offset in the pack of buf[0]
    for digest, offset, length in ordered:
        hasher = new_hasher(threaded=length >= (1 << 20))
        at, left = offset, length
        while left:
            if pos + len(buf) <= at:  # the bytes wanted start past this piece
                pos += len(buf)
                piece = next(pieces, None)
                if piece is None:
                    raise IntegrityError(
                        f"the uploaded pack ended inside object {digest}; nothing of it was stored",
                        digest=digest,
                    )
                buf = memoryview(piece)
                continue
            part = buf[at - pos : at - pos + left]
            hasher.update(part)
            at += len(part)
            left -= len(part)
        found = format_digest(hasher.hexdigest())
        if found != digest:
            raise IntegrityError(
                f"the uploaded bytes of object {digest} hash to {found}: the pack does not "
                "hold what its entries say; nothing of it was stored, upload it again",
                digest=digest,
            )


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


__all__ = [
    "PACK_TARGET",
    "PackUpload",
    "PackedRemoteObjectDB",
    "decode_index",
    "encode_index",
    "index_key",
    "list_info",
    "pack_key",
    "upload_key",
]
