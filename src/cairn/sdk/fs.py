"""``cairn://``: read any logged version with any data library, without downloading it.

An fsspec filesystem, registered through fsspec's ``fsspec.specs`` entry point, so after
``pip install cairn[fs]`` these work with no Cairn import::

    pandas.read_parquet("cairn://my-project/train-data:v3/part-0.parquet")
    pyarrow.dataset.dataset("cairn://train-data:latest/parquet/")
    datasets.load_dataset("parquet", data_files="cairn://train-data:best/*.parquet")

A path is ``[project/]name:ref/path/in/version``; ``ref`` is ``vN``, an alias (``latest``,
``best``...) or a digest (``blake3:...``); without a project, ``CAIRN_PROJECT`` (else
``default``) or the filesystem's ``project=`` option is used. ``registry/collection:ref``
reads the version a registry collection links (``cairn://models/classifier:production/...``),
and records use against that real version. ``cairn://`` lists projects and registries,
``cairn://project`` that project's artifacts (as ``name:latest``) and ``cairn://registry`` its
collections (as ``collection:latest``).

Read-only: a version never changes. The backend is the SDK's (embedded, a server through
CAIRN_URL, or a bucket store through CAIRN_STORE). A large file is stored as content-defined
chunks; a ranged read fetches only the chunks it overlaps (several at a time, and the next few
ahead of a sequential reader) and every object is checked against its digest before a byte of
it is returned. Verified objects are kept in a bounded in-memory block cache
(``CAIRN_FS_CACHE_MB``, default 256; content-addressed, so it never serves stale bytes). An
alias is resolved again after ``alias_ttl`` seconds (default 10): one read of a file always
sees one version.

While a run is active in this process (``cairn.init``), opening or reading a file records its
version as an input of the run, as ``use_artifact`` does.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from cairn import config
from cairn.core import names
from cairn.core.records import VersionInfo
from cairn.errors import ArtifactStateError, CairnError, InvalidInputError, NotFoundError
from cairn.objects import chunking, tree
from cairn.sdk import arrow_exit
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.resolve import resolve_ref

_PARALLEL = 8  # objects fetched at once
_READ_AHEAD = 8  # chunks fetched ahead of a sequential reader
_TREE_CACHE = 4096  # tree objects kept (they are small)


def _cache_bytes() -> int:
    return config.fs_cache_bytes()


class _BlockCache:
    """Verified objects by digest, least recently used dropped first, at most ``limit`` bytes
    (an object larger than the limit is returned but not kept)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            if digest in self._items:
                return
            self._items[digest] = data
            self.size += len(data)
            while self.size > self.limit:
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


@dataclass(frozen=True)
class _Path:
    """A parsed ``cairn://`` path: ``prefix`` is the version part as written (kept in every
    name returned, so globs and listings match what the caller wrote)."""

    prefix: str
    project: str
    name: str
    ref: str
    inner: str  # '' for the version's root


class CairnFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only fsspec filesystem over logged versions (see the module docstring)."""

    protocol = "cairn"
    root_marker = ""

    def __init__(
        self,
        project: str | None = None,
        alias_ttl: float = 10.0,
        cache_mb: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = names.check_project(project) if project else None
        self.alias_ttl = alias_ttl
        self.blocks = _BlockCache(cache_mb << 20 if cache_mb is not None else _cache_bytes())
        self._trees: OrderedDict[str, bytes] = OrderedDict()
        self._resolved: dict[tuple[str, ...], tuple[float, VersionInfo]] = {}
        self._used: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        arrow_exit.watch(self)

    # --- paths --------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        text = str(path)
        if text.startswith("cairn://"):
            text = text[len("cairn://") :]
        elif text.startswith("cairn:"):
            text = text[len("cairn:") :]
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return "cairn://" + name

    def _default_project(self) -> str:
        return self.project or config.default_project() or "default"

    def _parse(self, path: str) -> _Path | None:
        """The version part of a path, or None for the root or a bare project."""
        text = self._strip_protocol(path)
        parts = text.split("/") if text else []
        if not parts or (len(parts) == 1 and ":" not in parts[0]):
            return None
        if ":" in parts[0]:
            head, rest = parts[:1], parts[1:]
            project = self._default_project()
        elif ":" in parts[1]:
            head, rest = parts[:2], parts[2:]
            project = names.check_project(parts[0])
        else:
            raise InvalidInputError(
                f"cairn://{text} names no version: write cairn://[project/]name:ref/path, "
                "e.g. cairn://my-project/train-data:latest/part-0.parquet"
            )
        ref = names.parse_ref(head[-1])
        inner = "/".join(rest)
        if inner:
            inner = names.check_path(inner)
        return _Path("/".join(head), project, ref.name, ref.ref, inner)

    # --- the backend, versions and tree objects ----------------------------------------------
    def _backend(self) -> Backend:
        return get_backend()

    def _version(self, p: _Path) -> VersionInfo:
        backend = self._backend()
        where = (str(config.cairn_dir()), config.database_url(), config.server_url() or "")
        key = (*where, config.store_url() or "", p.project, p.name, p.ref)
        now = time.monotonic()
        fixed = names.is_version_label(p.ref) or p.ref.startswith("blake3:")
        hit = self._resolved.get(key)
        if hit is not None and (fixed or now - hit[0] < self.alias_ttl):
            return hit[1]
        try:
            info, _ = resolve_ref(backend.registry, f"{p.project}/{p.name}:{p.ref}", p.project)
        except NotFoundError as exc:
            raise FileNotFoundError(f"cairn://{p.prefix}: {exc}") from exc
        self._resolved[key] = (now, info)
        return info

    def _load_tree(self, digest: str) -> bytes:
        with self._lock:
            data = self._trees.get(digest)
            if data is not None:
                self._trees.move_to_end(digest)
                return data
        data = self._backend().object_store.get(digest)
        with self._lock:
            self._trees[digest] = data
            if len(self._trees) > _TREE_CACHE:
                self._trees.popitem(last=False)
        return data

    def _entry(self, p: _Path) -> tuple[VersionInfo, tree.Entry]:
        """The version and the tree entry at the path (a version's root is a directory)."""
        info = self._version(p)
        if not p.inner:
            return info, tree.Dir("", info.digest, info.size, info.file_count)
        entry = tree.lookup(info.digest, p.inner, self._load_tree)
        if entry is None:
            raise FileNotFoundError(
                f"cairn://{p.prefix}/{p.inner}: {info.qualified_name} has no such file or folder"
            )
        return info, entry

    # --- listing ------------------------------------------------------------------------------
    @staticmethod
    def _details(name: str, entry: tree.Entry, info: VersionInfo) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "size": entry.size,
            "type": "directory" if isinstance(entry, tree.Dir) else "file",
            "digest": entry.digest,
            "version": info.qualified_name,
        }
        if isinstance(entry, tree.Ref):
            out["reference"] = entry.uri
        if isinstance(entry, tree.Dir):
            out["files"] = entry.count
        return out

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        text = self._strip_protocol(path)
        p = self._parse(text)
        if p is None:
            return {"name": text, "size": 0, "type": "directory"}
        info, entry = self._entry(p)
        name = f"{p.prefix}/{p.inner}" if p.inner else p.prefix
        return self._details(name, entry, info)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        text = self._strip_protocol(path)
        p = self._parse(text)
        if p is None:
            out = self._ls_registry(text)
        else:
            info, entry = self._entry(p)
            base = f"{p.prefix}/{p.inner}" if p.inner else p.prefix
            if not isinstance(entry, tree.Dir):
                out = [self._details(base, entry, info)]
            else:
                out = [
                    self._details(f"{base}/{e.name}", e, info)
                    for e in tree.list_dir(entry.digest, self._load_tree)
                ]
        return out if detail else [o["name"] for o in out]

    def _ls_registry(self, text: str) -> list[dict[str, Any]]:
        registry = self._backend().registry
        if not text:
            tops = [pr.name for pr in registry.list_projects()]
            tops += [r.name for r in registry.list_registries() if r.name not in tops]
            return [{"name": name, "size": 0, "type": "directory"} for name in sorted(tops)]
        project = names.check_project(text)
        out: list[dict[str, Any]] = []
        offset = 0
        if registry.is_registry(project):
            while True:
                colls = registry.list_collections(project, limit=500, offset=offset)
                out += [
                    {"name": f"{project}/{c.name}:latest", "size": 0, "type": "directory"}
                    for c in colls
                ]
                if len(colls) < 500:
                    return out
                offset += 500
        while True:
            page = registry.list_artifacts(project, limit=500, offset=offset)
            out += [
                {"name": f"{project}/{a.name}:latest", "size": 0, "type": "directory"}
                for a in page
                if a.version_count
            ]
            if len(page) < 500:
                return out
            offset += 500

    def walk_files(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(name, details) of every file below ``path``, in path order, without one listing
        call per folder."""
        p = self._parse(path)
        if p is None:
            raise InvalidInputError("walk_files needs a version: cairn://[project/]name:ref/...")
        info, entry = self._entry(p)
        base = f"{p.prefix}/{p.inner}" if p.inner else p.prefix
        if not isinstance(entry, tree.Dir):
            yield base, self._details(base, entry, info)
            return
        for rel, e in tree.iter_files(entry.digest, self._load_tree):
            yield f"{base}/{rel}", self._details(f"{base}/{rel}", e, info)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        if maxdepth is not None or withdirs or self._parse(path) is None:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        try:
            found = dict(self.walk_files(path))
        except FileNotFoundError:
            found = {}
        return found if detail else sorted(found)

    def modified(self, path: str) -> datetime:
        """When the version was logged (it never changes after)."""
        p = self._parse(path)
        if p is None:
            raise IsADirectoryError(f"cairn://{self._strip_protocol(path)} is not in a version")
        return self._entry(p)[0].created_at

    created = modified

    def ukey(self, path: str) -> str:
        return str(self.info(path)["digest"])

    def checksum(self, path: str) -> int:
        return int(self.ukey(path).partition(":")[2][:16], 16)

    # --- reading ------------------------------------------------------------------------------
    def _file(self, path: str) -> tuple[_Path, VersionInfo, tree.File]:
        p = self._parse(path)
        if p is None:
            raise IsADirectoryError(f"cairn://{self._strip_protocol(path)} is not a file")
        info, entry = self._entry(p)
        if isinstance(entry, tree.Dir):
            raise IsADirectoryError(f"cairn://{p.prefix}/{p.inner} is a folder, not a file")
        if isinstance(entry, tree.Ref):
            raise InvalidInputError(
                f"cairn://{p.prefix}/{p.inner} is a reference to {entry.uri}; Cairn does "
                "not hold its bytes, read it from there (or download() the version)"
            )
        self._record_use(info)
        return p, info, entry

    def _record_use(self, info: VersionInfo) -> None:
        from cairn.sdk.run import current_run

        run = current_run()
        if run is None or not run._active or run.state != "running":
            return
        key = (run.id, info.id)
        if key in self._used:
            return
        run._backend.registry.record_use(run.id, info.id)
        self._used.add(key)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CairnFile:
        if mode != "rb":
            raise ArtifactStateError(
                f"cairn:// is read-only (mode {mode!r}): a logged version never changes; "
                "log a new version with run.log_artifact() instead"
            )
        p, _, entry = self._file(path)
        return CairnFile(
            self,
            f"{p.prefix}/{p.inner}",
            _Content.of(self, entry),
            block_size=block_size,
            cache_options=cache_options,
            # no second buffer: verified chunks are kept in the block cache and a sequential
            # reader has the next ones fetched ahead (fsspec's "readahead" copied every byte
            # once more and read 4 MiB past each miss)
            cache_type=kwargs.get("cache_type", "none"),
        )

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        _, _, entry = self._file(path)
        content = _Content.of(self, entry)
        lo, hi = _bounds(start, end, content.size)
        return content.read(lo, hi)

    # --- objects ------------------------------------------------------------------------------
    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(_PARALLEL, thread_name_prefix="cairn-fs")
                self._pool_pid = os.getpid()
                self._inflight = {}
            return self._pool

    def _fetch(self, digest: str) -> bytes:
        data = self.blocks.get(digest)
        if data is not None:
            return data
        data = self._backend().object_store.get(
            digest, verify=True
        )  # raises IntegrityError on a mismatch
        self.blocks.put(digest, data)
        return data

    def _fetch_async(self, digest: str) -> Future[bytes]:
        pool = self._executor()
        with self._lock:
            future = self._inflight.get(digest)
            if future is not None:
                return future
            future = pool.submit(self._fetch, digest)
            self._inflight[digest] = future
        # outside the lock: a future already done runs its callback here, at once
        future.add_done_callback(lambda _f: self._done(digest))
        return future

    def _done(self, digest: str) -> None:
        with self._lock:
            self._inflight.pop(digest, None)

    def _fetch_many(self, digests: list[str]) -> list[bytes]:
        cached = [self.blocks.get(d) for d in digests]
        if all(c is not None for c in cached):
            return [c for c in cached if c is not None]
        futures = [
            self._fetch_async(d) if c is None else None
            for d, c in zip(digests, cached, strict=True)
        ]
        out: list[bytes] = []
        for c, f in zip(cached, futures, strict=True):
            out.append(c if c is not None else f.result())  # type: ignore[union-attr]
        return out

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget resolved aliases (and cached blocks when ``path`` is None)."""
        self._resolved.clear()
        if path is None:
            self.blocks.clear()
        super().invalidate_cache(path)


def _bounds(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    lo = 0 if start is None else (start if start >= 0 else max(size + start, 0))
    hi = size if end is None else (end if end >= 0 else max(size + end, 0))
    return min(lo, size), min(max(hi, lo), size)


class _Content:
    """The objects of one file: a single blob, or chunks at known offsets."""

    def __init__(self, fs: CairnFileSystem, size: int, parts: list[tuple[str, int]]) -> None:
        self.fs = fs
        self.size = size
        self.digests = [d for d, _ in parts]
        self.last_end: int | None = None  # where the previous read ended
        self.ahead = 0  # the read-ahead has sent for the chunks up to this index
        self.starts: list[int] = []
        offset = 0
        for _, n in parts:
            self.starts.append(offset)
            offset += n
        if offset != size:
            raise CairnError(f"stored chunk list adds up to {offset} bytes, not {size}")

    @classmethod
    def of(cls, fs: CairnFileSystem, entry: tree.File) -> _Content:
        size = entry.size
        if entry.chunks:
            parts = chunking.decode_chunk_list(fs._load_tree(entry.chunks))
        else:
            parts = [(entry.digest, size)] if size else []
        return cls(fs, size, parts)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end): only the objects overlapping them are fetched (and verified);
        when the read continues the previous one, the next few chunks are fetched ahead in
        the background."""
        if start >= end:
            return b""
        first = bisect.bisect_right(self.starts, start) - 1
        last = bisect.bisect_right(self.starts, end - 1) - 1
        wanted = self.digests[first : last + 1]
        if self.last_end is not None and 0 <= start - self.last_end < 1 << 20:
            # a sequential reader: fetch the next chunks while it works on these; each chunk
            # is sent for once, not again on every small read within the current one
            stop = last + 1 + _READ_AHEAD
            begin = self.ahead if last + 1 <= self.ahead <= stop else last + 1
            for d in self.digests[begin:stop]:
                if self.fs.blocks.get(d) is None:
                    self.fs._fetch_async(d)
            self.ahead = stop
        self.last_end = end
        blobs = self.fs._fetch_many(wanted)
        if len(blobs) == 1:
            blob = blobs[0]
            lo, hi = start - self.starts[first], end - self.starts[first]
            return blob if (lo, hi) == (0, len(blob)) else blob[lo:hi]
        # one copy: the partial first and last chunks join as views, not as sliced copies
        out = []
        for i, blob in zip(range(first, last + 1), blobs, strict=True):
            lo = max(start - self.starts[i], 0)
            hi = min(end - self.starts[i], len(blob))
            out.append(memoryview(blob)[lo:hi] if (lo, hi) != (0, len(blob)) else blob)
        return b"".join(out)


class CairnFile(AbstractBufferedFile):  # type: ignore[misc]
    """A file of a version, open for reading (seekable; reads fetch only what they cover)."""

    DEFAULT_BLOCK_SIZE = 4 << 20

    def __init__(
        self,
        fs: CairnFileSystem,
        path: str,
        content: _Content,
        block_size: int | None = None,
        cache_options: dict[str, Any] | None = None,
        cache_type: str = "none",
    ) -> None:
        self.content = content
        super().__init__(
            fs,
            path,
            mode="rb",
            block_size=block_size or "default",
            cache_type=cache_type,
            cache_options=cache_options,
            size=content.size,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        lo, hi = _bounds(start, end, self.content.size)
        return self.content.read(lo, hi)


__all__ = ["CairnFile", "CairnFileSystem"]
