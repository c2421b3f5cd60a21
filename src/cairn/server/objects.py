"""The server's side of the object store: existence checks per caller, verified uploads,
reads, and binding a version's objects to its project.

The store is a `PackStore` opened by `open_object_store`, as the embedded mode and gc open
theirs: a folder (`LocalPackStore`, shared by every server process: its index is SQLite in WAL
mode, each writer appends to a pack file of its own) or a bucket (`BucketPackStore`).

* An **upload** request writes into a pack of its own (`PackStore.open_upload`); every object's
  bytes are hashed and compared with its digest first. Only when the whole request has arrived
  and been verified is the pack made durable and indexed: a request cut short, malformed or too
  large leaves nothing behind, and its retry stores each object once. Objects the store already
  has are verified and discarded.
* **Existence** is answered per caller: an object counts as present only when the caller may
  see it (`Accounts.known`), so a check never tells a stranger what another project holds.
* **Binding**: when a version is committed its objects are recorded as held by its project
  (`project_objects`), walking the tree from the root and skipping subtrees the project already
  holds. Every object reached must be in the store and known to the committer, so nobody can
  gain access to an object by referencing a digest they only know of.

With ``store_url`` naming a bucket (s3://, gs://, az://) the objects live in packs on object
storage (`BucketPackStore`, a local index cache under ``cache_dir``), and any number of
server processes on any machines may share the bucket: an object another process stored is
found by listing the bucket's pack indexes again when a lookup misses. In **direct** mode
(the default with a bucket) clients move the bytes themselves on short-lived signed URLs:

* ``new_slots`` hands a caller allowed to write somewhere signed PUT URLs for
  ``uploads/<owner>/<slot>.pack``; ``commit_slot`` then adopts the pack (copied inside the
  bucket to a key nobody else can write, every listed object hashed, indexed only if all
  match) and records the caller's receipts, as a framed upload does.
* ``locate`` answers, for objects the caller may read, each one's pack, offset and length and
  a signed GET URL per pack; a caller who may not read one gets the same not-found error as a
  download, and no URL.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cairn.core.digest import hash_bytes, is_digest
from cairn.errors import (
    CairnError,
    IntegrityError,
    InvalidInputError,
    ObjectNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StateError,
    StoreError,
)
from cairn.objects import chunking, tree
from cairn.objects.packs import PackStore, Upload
from cairn.objects.packs.adopt import adopt
from cairn.objects.packs.bucket import BucketPackStore
from cairn.objects.packs.format import pack_key, upload_key
from cairn.objects.packs.local import LocalPackStore
from cairn.objects.store import ObjectStore, open_object_store
from cairn.service.accounts import Accounts, Principal
from cairn.wire import frame_header, in_blocks

_SHOWN = 5
SUBTREE_BUDGET = 8 << 20  # bytes of tree objects sent ahead in one request
REFRESH_AGE = 5.0  # seconds: an existence check lists the bucket's indexes at most this often
MAX_SLOTS = 64  # upload URLs per request
_SLOT = re.compile(r"[0-9a-f]{32}")


_UPLOAD_FIRST = "Upload them first."
_READ_ADVICE = (
    "If a version you may read holds them, the server's store lost them or they were damaged "
    "(and forgotten): log the data that produced them again."
)


def _missing_error(
    digests: Iterable[str], what: str, advice: str = _UPLOAD_FIRST
) -> ObjectNotFoundError:
    missing = sorted(digests)
    shown = ", ".join(missing[:_SHOWN])
    more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
    exc = ObjectNotFoundError(
        f"{len(missing)} object{'s' if len(missing) != 1 else ''} {what} not on the server or "
        f"not yours to use: {shown}{more}. {advice}",
        missing[0],
    )
    exc.detail = {"missing": missing[:1000]}  # type: ignore[attr-defined]
    return exc


# objects bound per transaction: a million-object bind on SQLite took 13.4-13.9 s in batches of
# 50,000 and 8.5 s in batches of 200,000 (each commit rewrites the B-tree pages it touched, and
# random digests touch most of them); PostgreSQL ~19 s either way. Memory: ~35 MB of digests.
_BIND_BATCH = 200_000
_BIND_GROUP = 32  # tree objects whose children are checked together


def _children_first(root: str, below_of: dict[str, list[str]]) -> Iterator[str]:
    """The tree objects of ``below_of`` reachable from ``root``, each after every one below it
    (post-order, without recursion: a folder may be thousands of levels deep)."""
    if root not in below_of:
        return
    visited = {root}
    stack = [(root, iter(below_of[root]))]
    while stack:
        node, rest = stack[-1]
        child = next(rest, None)
        if child is None:
            stack.pop()
            yield node
        elif child not in visited:
            visited.add(child)
            stack.append((child, iter(below_of.get(child, ()))))


class ObjectService:
    """The server's object store behind per-caller access (see the module doc)."""

    def __init__(
        self,
        root: Path,
        accounts: Accounts,
        *,
        store_url: str | None = None,
        store_endpoint: str | None = None,
        cache_dir: Path | None = None,
        direct: bool = True,
        signed_url_ttl: float = 900,
        max_object_bytes: int = 64 << 20,
        max_pack_bytes: int = 256 << 20,
    ) -> None:
        self.root = root
        self.accounts = accounts
        self.signed_url_ttl = signed_url_ttl
        self.max_object_bytes = max_object_bytes
        self.max_pack_bytes = max_pack_bytes
        self.store: PackStore = open_object_store(
            store_url or root, cache_dir=cache_dir, endpoint=store_endpoint
        )
        # the bucket, when the store is one (direct transfers, refreshing its index)
        self.bucket = self.store if isinstance(self.store, BucketPackStore) else None
        self.direct = False
        if self.bucket is not None and direct:
            try:
                self._check_signing(self.bucket)
            except BaseException:
                self.store.close()
                raise
            self.direct = True
        self._lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    def describe(self) -> str:
        if self.bucket is None:
            return str(self.root)
        how = (
            f"direct transfers on signed URLs valid {self.signed_url_ttl:g} s"
            if self.direct
            else "objects sent through the server"
        )
        return f"{self.store.url} ({how})"

    def info(self) -> dict[str, Any]:
        """What clients need to know about the store (``GET /info``)."""
        return {
            "store": "bucket" if self.bucket is not None else "folder",
            "direct": self.direct,
            "signed_url_ttl": self.signed_url_ttl if self.direct else None,
            "max_pack_bytes": self.max_pack_bytes,
            "max_object_bytes": self.max_object_bytes,
        }

    def _check_signing(self, bucket: BucketPackStore) -> None:
        signer = bucket.storage.signer
        problem = "this kind of store has no signed URLs" if signer is None else ""
        if signer is not None:
            try:
                signer.signed_urls([upload_key("check", "0" * 32)], "PUT", 60)
            except CairnError as exc:
                problem = str(exc)
        if problem:
            raise StoreError(
                f"cannot hand out signed URLs for {self.store.url} ({problem}); give the "
                "server credentials that can sign (for GCS a service account key), or start "
                "it with --no-direct to send objects through the server"
            )

    # --- existence -----------------------------------------------------------------------------
    def _absent(self, digests: set[str], fresh: bool) -> set[str]:
        absent = self.store.missing(digests)
        if absent and self.bucket is not None:
            # stored through another server process since this one last listed the bucket?
            self.bucket.refresh(max_age=None if fresh else REFRESH_AGE)
            absent = self.store.missing(absent)
        return absent

    def missing(
        self, principal: Principal, digests: Iterable[str], *, fresh: bool = False
    ) -> set[str]:
        """The digests the caller must upload: not in the store, or not theirs to see.
        ``fresh``: on a bucket, list the indexes again whenever one is not found (reads and
        binding, where a stale answer would be an error; an upload check may be seconds old,
        which costs at most a duplicate upload)."""
        wanted = set(digests)
        absent = self._absent(wanted, fresh)
        present = wanted - absent
        return absent | (present - self.accounts.known(principal, present))

    def check_readable(self, principal: Principal, digests: Iterable[str]) -> None:
        wanted = set(digests)
        unreadable = self.missing(principal, wanted, fresh=True)
        if unreadable:
            raise _missing_error(unreadable, "are" if len(unreadable) != 1 else "is", _READ_ADVICE)

    # --- uploads -------------------------------------------------------------------------------
    def open_upload(self) -> Upload:
        return self.store.open_upload()

    def store_group(self, pack: Upload, frames: list[tuple[str, bytearray]]) -> int:
        """Verify each object against its digest, then write those the store lacks into the
        request's pack. Returns the bytes written."""
        for digest, data in frames:
            if hash_bytes(data) != digest:
                raise IntegrityError(
                    f"the bytes sent for object {digest} hash to {hash_bytes(data)}: the upload "
                    "was corrupted on the way; nothing of this request was stored, send it again",
                    digest=digest,
                )
        lacking = self.store.missing(d for d, _ in frames)
        written = 0
        for digest, data in frames:
            if digest in lacking and pack.put(digest, memoryview(data)):
                written += len(data)
        return written

    # --- direct transfers (a bucket store) -------------------------------------------------------
    def _direct_store(self) -> BucketPackStore:
        if not self.direct or self.bucket is None:
            raise StateError(
                "this server sends objects itself (its store is a folder, or it runs with "
                "--no-direct): upload with POST /objects and download with POST /objects/fetch"
            )
        return self.bucket

    def _require_writer(self, principal: Principal) -> None:
        roles = self.accounts.roles(principal)
        if roles is not None and not any(r in ("write", "admin") for r in roles.values()):
            raise PermissionDeniedError(
                f"user {principal.name!r} may not write to any project, so the server gives "
                "them no upload URL; ask a project's admin for write access"
            )

    def new_slots(self, principal: Principal, count: int = 1) -> dict[str, Any]:
        """Signed PUT URLs for ``count`` packs the caller will upload and then commit."""
        store = self._direct_store()
        if not 1 <= count <= MAX_SLOTS:
            raise InvalidInputError(f"ask for 1 to {MAX_SLOTS} upload URLs, not {count}")
        self._require_writer(principal)
        owner = _owner(principal)
        ids = [uuid.uuid4().hex for _ in range(count)]
        urls = _sign(store, [upload_key(owner, i) for i in ids], "PUT", self.signed_url_ttl)
        signer = store.storage.signer
        headers = signer.signed_put_headers() if signer is not None else {}
        return {
            "packs": [
                {"id": i, "method": "PUT", "url": u, "headers": headers}
                for i, u in zip(ids, urls, strict=True)
            ],
            "expires_at": time.time() + self.signed_url_ttl,
            "max_bytes": self.max_pack_bytes,
        }

    def commit_slot(
        self, principal: Principal, slot: str, entries: list[tuple[str, int, int]]
    ) -> dict[str, Any]:
        """Adopt the pack the caller uploaded for ``slot``: every object ``entries`` lists
        (digest, offset, length) is read back from the bucket and hashed; if one does not
        match, nothing is stored. Then the caller's receipts are recorded."""
        store = self._direct_store()
        if not _SLOT.fullmatch(slot):
            raise InvalidInputError(f"invalid upload slot {slot!r}: expected 32 hex digits")
        self._require_writer(principal)
        for digest, _offset, length in entries:
            if not is_digest(digest):
                raise InvalidInputError(
                    f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
                )
            if length > self.max_object_bytes:
                raise PayloadTooLargeError(
                    f"object {digest} is larger than {self.max_object_bytes} bytes, the most "
                    "this server accepts"
                )
        key = upload_key(_owner(principal), slot)
        try:
            size = store.storage.size(key)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"nothing was uploaded for pack {slot} (or it was committed already); ask "
                "for a new upload URL and upload it again",
                slot,
            ) from None
        if size > self.max_pack_bytes:
            store.storage.delete(key)
            raise PayloadTooLargeError(
                f"the uploaded pack is {size} bytes; this server accepts packs of at most "
                f"{self.max_pack_bytes} bytes"
            )
        stored, written = adopt(store, key, entries)
        digests = list(dict.fromkeys(d for d, _, _ in entries))
        self.accounts.add_receipts(principal, digests)
        return {"received": len(digests), "stored": stored, "stored_bytes": written}

    def locate(self, principal: Principal, digests: list[str]) -> dict[str, Any]:
        """Where each object is (pack, offset, length) and a signed GET URL per pack, for
        objects the caller may read (ObjectNotFoundError naming the others, and no URL).

        A URL opens the whole pack, so a pack is signed only when the caller may read every
        object it holds; objects in other packs are listed under ``fetch``, for the client
        to download through the server (``POST /objects/fetch``)."""
        store = self._direct_store()
        self.check_readable(principal, digests)
        found = store.locate(digests)
        lost = [d for d in digests if d not in found]
        if lost:  # pragma: no cover - forgotten between the two lookups
            raise _missing_error(lost, "are" if len(lost) != 1 else "is")
        packs = {pack for pack, _, _ in found.values()}
        shared = self._shared_packs(principal, store, packs, set(digests))
        signed = sorted(packs - shared)
        urls = _sign(store, [pack_key(p) for p in signed], "GET", self.signed_url_ttl)
        return {
            "objects": {
                d: [pack, offset, length]
                for d, (pack, offset, length) in found.items()
                if pack not in shared
            },
            "packs": dict(zip(signed, urls, strict=True)),
            "fetch": [d for d, (pack, _, _) in found.items() if pack in shared],
            "expires_at": time.time() + self.signed_url_ttl,
        }

    def _shared_packs(
        self,
        principal: Principal,
        store: BucketPackStore,
        packs: set[str],
        readable: set[str],
    ) -> set[str]:
        """The packs holding an object the caller may not read (dedup put it there for
        someone else): nobody gets a URL that would open objects they may not see."""
        if principal.is_admin:
            return set()
        members = store.pack_members(packs)
        others = set().union(*members.values()) - readable if members else set()
        if not others:
            return set()
        hidden = others - self.accounts.known(principal, others)
        return {pack for pack, inside in members.items() if not hidden.isdisjoint(inside)}

    # --- reads ---------------------------------------------------------------------------------
    def read(self, digest: str) -> bytes:
        """One object's bytes, verified: damaged bytes are an IntegrityError, never a 200
        (a local store then forgets the object, so a re-log stores it again)."""
        return self.store.get(digest)

    def stream(self, digests: list[str]) -> Iterator[bytes]:
        """Frames of the objects, read one at a time (all looked up at once first), sent in
        blocks of about STREAM_BLOCK bytes."""
        if self.bucket is not None:
            self.bucket.warm(digests)  # read in large blocks with read-ahead
            yield from in_blocks(_frames(self.bucket, digests))
            return
        reader = LocalPackStore(self.root)  # its own lookups: streams run side by side
        try:
            reader.warm(digests)
            yield from in_blocks(_frames(reader, digests))
        finally:
            reader.close()

    def stream_subtree(
        self, principal: Principal, root: str, budget: int = SUBTREE_BUDGET
    ) -> Iterator[bytes]:
        """Frames of the object ``root`` and, when it is a tree, of the tree objects below it,
        breadth-first, until ``budget`` bytes were sent (the caller checked ``root``): a client
        listing or downloading a version gets its directories in one request, not one each.
        Sent in blocks of about STREAM_BLOCK bytes (each block is a hop to a worker thread)."""
        return in_blocks(self._subtree_frames(principal, root, budget))

    def _subtree_frames(self, principal: Principal, root: str, budget: int) -> Iterator[bytes]:
        frontier = [root]
        sent = 0
        first = True
        while frontier:
            readable = set(frontier) if first else set(frontier) - self.missing(principal, frontier)
            first = False
            below: list[str] = []
            self._prefetch([d for d in frontier if d in readable])
            for digest in frontier:
                if digest not in readable:
                    continue
                data = self.store.get(digest, verify=False)
                yield frame_header(digest, len(data))
                yield data
                sent += len(data)
                if sent >= budget:
                    return
                if data[:10] == b'{"cairn":"':
                    try:
                        children = self._children(digest, "t")
                    except InvalidInputError:
                        continue  # a blob that looks like a tree: nothing below it
                    below.extend(d for d, kind in children.items() if kind == "t")
            frontier = list(dict.fromkeys(below))

    def _prefetch(self, digests: list[str]) -> None:
        """On a bucket, read these objects (trees, about to be parsed) in a few large GETs
        with read-ahead rather than one request each."""
        if self.bucket is not None and len(digests) > 1:
            self.bucket.warm(digests)

    # --- binding -------------------------------------------------------------------------------
    def bind_version(self, principal: Principal, project: str, root: str) -> int:
        """Record every object of the version rooted at ``root`` as held by ``project``.
        Returns how many objects were newly bound. Raises ObjectNotFoundError naming objects
        that are missing or not the committer's to use."""
        project_id = self.accounts.project_id(project)
        if project_id is None:  # pragma: no cover - the caller created it
            raise InvalidInputError(f"project {project!r} does not exist")
        return self._bind_walk(
            principal,
            root,
            lambda ds: self.accounts.bound(project_id, ds),
            lambda ds: self.accounts.bind(project_id, ds),
        )

    def bind_link(self, principal: Principal, registry: str, root: str) -> int:
        """Record every object of the version rooted at ``root`` as held by ``registry`` (it
        is being linked there), so the registry's members may download it. The linker must be
        able to read every object (they read the version's project). Returns how many objects
        were newly bound."""
        registry_id = self.accounts.registry_id(registry)
        if registry_id is None:
            raise InvalidInputError(f"registry {registry!r} does not exist")
        return self._bind_walk(
            principal,
            root,
            lambda ds: self.accounts.registry_bound(registry_id, ds),
            lambda ds: self.accounts.bind_registry(registry_id, ds),
        )

    def _bind_walk(
        self,
        principal: Principal,
        root: str,
        held: Callable[[Iterable[str]], set[str]],
        bind: Callable[[list[str]], None],
    ) -> int:
        """Bind the objects of the version rooted at ``root`` that ``held`` does not name,
        walking down only below those (what is held has everything below it held too), in
        memory bounded by the number of folders, not files.

        Objects are bound children first, in batches: file data (and a large file's chunk
        list once its chunks are) as the walk finds it, the tree objects at the end, deepest
        first. So at every commit a bound tree has everything below it bound, and a bind cut
        short leaves only complete subtrees bound, which the next walk skips. Every object is
        checked (present, and the principal's to use) before it is bound; the first that is
        not raises ObjectNotFoundError (a bind never adds what failed the check)."""
        pending: list[str] = []
        pending_set: set[str] = set()
        bound = 0

        def flush() -> None:
            nonlocal pending, pending_set, bound
            if pending:
                bind(pending)
                bound += len(pending)
                pending, pending_set = [], set()

        def add(digests: Iterable[str]) -> None:
            for digest in digests:
                if digest not in pending_set:
                    pending.append(digest)
                    pending_set.add(digest)
                    if len(pending) >= _BIND_BATCH:
                        flush()

        def unheld(group: dict[str, str]) -> dict[str, str]:
            """What of ``group`` is to bind (neither held nor waiting to be), after the check."""
            known = held(group)
            todo = {d: k for d, k in group.items() if d not in known and d not in pending_set}
            bad = self.missing(principal, todo, fresh=True) if todo else set()
            if bad:
                raise _missing_error(bad, "of this version are")
            return todo

        # tree objects to bind, each with the tree objects below it that are to bind too:
        # one entry per folder (or page), never one per file
        below_of: dict[str, list[str]] = {}
        level = list(unheld({root: "t"}))
        while level:
            after: list[str] = []
            for start in range(0, len(level), _BIND_GROUP):
                group = level[start : start + _BIND_GROUP]
                self._prefetch(group)
                children_of = {digest: self._children(digest, "t") for digest in group}
                found: dict[str, str] = {}
                for children in children_of.values():
                    found.update(children)
                todo = unheld({d: k for d, k in found.items() if d not in below_of})
                add(d for d, k in todo.items() if k == "b")
                lists = [d for d, k in todo.items() if k == "c"]
                self._prefetch(lists)
                for chunk_list in lists:
                    add(unheld(self._children(chunk_list, "c")))  # its chunks, then itself
                    add([chunk_list])
                for digest, children in children_of.items():
                    below_of[digest] = [
                        d for d, k in children.items() if k == "t" and (d in todo or d in below_of)
                    ]
                for digest, kind in todo.items():
                    if kind == "t" and digest not in below_of:
                        below_of[digest] = []
                        after.append(digest)
            level = after
        flush()
        for digest in _children_first(root, below_of):
            add([digest])
        flush()
        return bound

    def bind_objects(self, principal: Principal, project: str, digests: Iterable[str]) -> None:
        """Bind single objects (a run's code diff) to the project."""
        wanted = set(digests)
        bad = self.missing(principal, wanted, fresh=True)
        if bad:
            raise _missing_error(bad, "are" if len(bad) != 1 else "is")
        project_id = self.accounts.project_id(project)
        if project_id is not None:
            self.accounts.bind(project_id, wanted)

    def _children(self, digest: str, kind: str) -> dict[str, str]:
        data = self.store.get(digest, verify=False)
        out: dict[str, str] = {}
        try:
            if kind == "c":
                for chunk, _n in chunking.decode_chunk_list(data):
                    out[chunk] = "b"
                return out
            kinds = {"tree": "t", "blob": "b", "chunks": "c"}
            for link in tree.children(data):
                out[link.digest] = kinds[link.kind]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"object {digest} is not a valid {'chunk list' if kind == 'c' else 'tree'} "
                f"object ({exc}); it cannot be part of a version"
            ) from None
        return out


def _frames(reader: ObjectStore, digests: list[str]) -> Iterator[bytes]:
    for digest in digests:
        data = reader.get(digest, verify=False)
        yield frame_header(digest, len(data))
        yield data


def _owner(principal: Principal) -> str:
    """The folder of a caller's uploads (a slot is only committed by whoever got it)."""
    return "open" if principal.user_id is None else f"u{principal.user_id}"


def _sign(store: BucketPackStore, keys: list[str], method: str, ttl: float) -> list[str]:
    signer = store.storage.signer
    if signer is None:  # pragma: no cover - checked when the server started
        raise StoreError(f"the store {store.url} cannot sign URLs")
    return list(signer.signed_urls(keys, method, ttl))


__all__ = ["ObjectService"]
