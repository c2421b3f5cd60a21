"""References: artifact entries that point at data kept elsewhere (a bucket, a web server, a
shared folder) instead of copying it into Cairn's store.

A reference is a tree entry of kind ``r``::

    {"n": "train.csv", "t": "r", "d": "blake3:…", "s": 1234,
     "u": "s3://bucket/data/train.csv", "x": {"etag": "…", "version": "…"}}

``u`` is the object's URI and ``x`` what identifies its content at the source, per scheme:

=========== ===================================================================
``file://`` ``blake3``: the BLAKE3 of the file's content (folders are walked)
``s3://``   ``etag`` and ``version`` (the version id; ``?versionId=`` pins one)
``gs://``   ``etag`` and ``version`` (the generation; ``?generation=`` pins one)
``az://``   ``etag`` and ``version`` (the version id, when versioning is on)
``https://``  ``etag`` or ``last_modified`` (with the size), from a HEAD; a server that
            sends neither is read once and ``blake3`` recorded
other       nothing: the URI alone is tracked (also every scheme with ``checksum=False``)
=========== ===================================================================

The entry's digest ``d`` is a *reference digest*: the BLAKE3 of the canonical JSON of
``{"cairn":"ref","v":1,"u":…,"s":…,"x":…}``. It changes whenever the referenced object does
(a new ETag, version or content hash), so a version's digest does too, and logging a
reference to an unchanged object makes no new version.

Downloads fetch each referenced object from its source and check it against ``x`` (the
version recorded is fetched when there is one, so a versioned reference survives overwrites);
a source that changed or vanished is an error naming the entry. Checking (``verify``) reads
only metadata (a HEAD), except for ``file://`` (the file is hashed) and servers that gave no
ETag or Last-Modified.

Credentials come from where each cloud's tools look (see `cairn.storage.cloud`); Cairn never
records them.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cairn.core.digest import hash_bytes, new_hasher
from cairn.core.names import check_path
from cairn.errors import (
    InvalidInputError,
    ReferenceChangedError,
    ReferenceMissingError,
    SourceFileError,
    StoreError,
    TooManyObjectsError,
)
from cairn.objects import fswalk
from cairn.objects.hashcache import HashCache
from cairn.objects.tree import FileEntry, Ref, encode

DEFAULT_MAX_OBJECTS = 10_000
CONCURRENCY = 16
_BLOCK = 8 << 20
CLOUD_SCHEMES = ("s3", "gs", "az")


class ReferenceSkippedWarning(UserWarning):
    """``download(allow_missing_references=True)`` left out references whose source is gone."""


# --- the entry -------------------------------------------------------------------------------


def reference_digest(uri: str, size: int, fields: dict[str, Any]) -> str:
    """The digest recorded for a reference: it changes when the object at the URI does."""
    return hash_bytes(encode({"cairn": "ref", "v": 1, "u": uri, "s": size, "x": fields}))


def make_entry(path: str, uri: str, size: int, fields: dict[str, Any]) -> FileEntry:
    return FileEntry(
        check_path(path),
        reference_digest(uri, size, fields),
        size,
        ref={"u": uri, "x": fields},
    )


@dataclass(frozen=True)
class Found:
    """One object a URI resolved to."""

    rel: str  # path below the referenced URI ("" for the URI itself)
    uri: str
    size: int
    fields: dict[str, Any]


# --- resolvers, one per scheme ---------------------------------------------------------------


class Resolver:
    """How to record, check and fetch the objects of one URI scheme."""

    def resolve(self, uri: str, max_objects: int) -> list[Found]:
        raise NotImplementedError

    def current(self, uri: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The identifying fields the source has now (None when the object is gone)."""
        raise NotImplementedError

    def fetch(self, uri: str, fields: dict[str, Any], out: Path) -> dict[str, Any]:
        """Write the object into ``out`` (its recorded version when there is one); return
        the fields the source reported for what was written. Raises ReferenceMissingError."""
        raise NotImplementedError

    def fetch_tree(self, uri: str, out: Path, root: Path | None = None) -> None:
        """An unchecked reference whose URI turned out to be a folder or prefix: fetch
        everything below it into the folder ``out`` (inside ``root``, never through a
        symlink)."""
        for f in self.resolve(uri, DEFAULT_MAX_OBJECTS * 10):
            target = out / check_path(f.rel) if f.rel else out

            def fill(tmp: Path, f: Found = f) -> dict[str, Any]:
                return self.fetch(f.uri, {}, tmp)

            _write_atomically(target, fill, lambda _: True, root or out.parent)


def _too_many(uri: str, max_objects: int) -> TooManyObjectsError:
    return TooManyObjectsError(
        f"{uri} holds more than {max_objects:,} objects; pass max_objects= a larger number to "
        "reference them all, or reference a narrower prefix"
    )


def _missing(uri: str, what: str = "nothing") -> ReferenceMissingError:
    return ReferenceMissingError(f"{what} found at {uri}; check the URI and your access to it")


class FileResolver(Resolver):
    @staticmethod
    def path(uri: str) -> Path:
        parts = urlsplit(uri)
        host = parts.netloc if parts.netloc not in ("", "localhost") else ""
        return Path(unquote(host + parts.path))

    @staticmethod
    def _hash(path: Path) -> tuple[str, int]:
        hasher = new_hasher(threaded=True)
        size = 0
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                hasher.update(block)
                size += len(block)
        return "blake3:" + hasher.hexdigest(), size

    def resolve(self, uri: str, max_objects: int) -> list[Found]:
        root = self.path(uri)
        try:
            st = os.stat(root)
        except FileNotFoundError:
            raise SourceFileError(f"{root} does not exist; check the path in {uri}") from None
        if not stat.S_ISDIR(st.st_mode):
            digest, size = self._hash(root)
            return [Found("", root.absolute().as_uri(), size, {"blake3": digest})]
        files: list[Path] = []
        for folder, dirs, names in fswalk.walk(root):
            dirs.sort()
            for name in sorted(names):
                files.append(Path(folder) / name)
                if len(files) > max_objects:
                    raise _too_many(uri, max_objects)
        files.sort(key=lambda p: p.relative_to(root).as_posix())
        with ThreadPoolExecutor(4) as pool:  # BLAKE3 releases the GIL
            hashed = list(pool.map(self._hash, files))
        return [
            Found(p.relative_to(root).as_posix(), p.absolute().as_uri(), size, {"blake3": d})
            for p, (d, size) in zip(files, hashed, strict=True)
        ]

    def current(self, uri: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(uri)
        if not path.is_file():
            return None
        if "blake3" not in fields:
            return {}
        digest, size = self._hash(path)
        return {"blake3": digest, "size": size}

    def fetch(self, uri: str, fields: dict[str, Any], out: Path) -> dict[str, Any]:
        path = self.path(uri)
        if path.is_dir():
            raise IsADirectoryError(str(path))
        hasher = new_hasher(threaded=True)
        try:
            with open(path, "rb") as src, open(out, "wb") as dst:
                while block := src.read(_BLOCK):
                    hasher.update(block)
                    dst.write(block)
        except FileNotFoundError:
            raise _missing(uri, "no file") from None
        return {"blake3": "blake3:" + hasher.hexdigest()} if "blake3" in fields else {}


class CloudResolver(Resolver):
    """s3://, gs:// and az:// through obstore (`cairn.storage.cloud`)."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme

    def _split(self, uri: str) -> tuple[Any, str, str | None]:
        from cairn.storage.cloud import check_fork, client

        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        pins = query.get("versionId") or query.get("generation")
        pinned = pins[-1] if pins else None
        if not parts.netloc:
            raise InvalidInputError(f"{uri!r} names no bucket; write {self.scheme}://BUCKET/KEY")
        store = client(self.scheme, parts.netloc)
        check_fork()
        return store, unquote(parts.path.lstrip("/")), pinned

    def _uri(self, uri: str, key: str) -> str:
        return f"{self.scheme}://{urlsplit(uri).netloc}/{key}"

    def _fail(self, exc: BaseException, what: str, uri: str) -> Exception:
        from cairn.storage.cloud import translate

        if isinstance(exc, FileNotFoundError):
            return _missing(uri, "no object")
        return translate(exc, what, uri)

    @staticmethod
    def _fields(meta: dict[str, Any]) -> dict[str, Any]:
        from cairn.storage.cloud import normalize_etag

        fields: dict[str, Any] = {}
        etag = normalize_etag(meta.get("e_tag"))
        if etag:
            fields["etag"] = etag
        if meta.get("version"):
            fields["version"] = str(meta["version"])
        return fields

    def _head(self, store: Any, key: str, version: str | None) -> dict[str, Any] | None:
        import obstore

        try:
            if version:
                return dict(
                    obstore.get(store, key, options={"version": version, "head": True}).meta
                )
            return dict(obstore.head(store, key))
        except FileNotFoundError:
            return None

    def resolve(self, uri: str, max_objects: int) -> list[Found]:
        import obstore

        store, key, pinned = self._split(uri)
        try:
            if key and not key.endswith("/"):
                meta = self._head(store, key, pinned)
                # a 0-byte "folder marker" (application/x-directory, made by consoles and
                # sync tools) with objects below it is a folder: its children are listed
                marker = meta is not None and int(meta["size"]) == 0
                if meta is not None and not (marker and self._has_children(store, key)):
                    return [Found("", self._uri(uri, key), int(meta["size"]), self._fields(meta))]
                if pinned:
                    raise _missing(uri, f"no version {pinned} of the object")
            folder = key.rstrip("/")
            metas: list[dict[str, Any]] = []
            for batch in obstore.list(store, folder or None, chunk_size=1000):
                for listed in batch:
                    if listed["path"].endswith("/"):
                        continue  # a "folder" marker made by a console
                    metas.append(dict(listed))
                    if len(metas) > max_objects:
                        raise _too_many(uri, max_objects)
        except (ReferenceMissingError, TooManyObjectsError):
            raise
        except Exception as exc:
            raise self._fail(exc, "reading", uri) from None
        # a 0-byte marker at a path that also has objects below it is a folder, not a file
        folders = {
            m["path"].rsplit("/", i)[0] for m in metas for i in range(1, m["path"].count("/") + 1)
        }
        metas = [m for m in metas if not (int(m["size"]) == 0 and m["path"] in folders)]
        if not metas:
            raise _missing(uri)
        start = len(folder) + 1 if folder else 0
        # listings do not report versions: in a versioned bucket, HEAD each object for it
        first = self._head(store, metas[0]["path"], None)
        if first is not None and first.get("version"):
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                heads = list(pool.map(lambda m: self._head(store, m["path"], None), metas))
            metas = [h if h is not None else m for h, m in zip(heads, metas, strict=True)]
        return [
            Found(m["path"][start:], self._uri(uri, m["path"]), int(m["size"]), self._fields(m))
            for m in metas
        ]

    @staticmethod
    def _has_children(store: Any, key: str) -> bool:
        import obstore

        return any(batch for batch in obstore.list(store, key + "/", chunk_size=1))

    def current(self, uri: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        store, key, _ = self._split(uri)
        try:
            meta = self._head(store, key, fields.get("version"))
            if meta is None and fields.get("version"):
                meta = self._head(store, key, None)  # the version is gone: is the object?
        except Exception as exc:
            raise self._fail(exc, "checking", uri) from None
        return None if meta is None else {**self._fields(meta), "size": int(meta["size"])}

    def fetch(self, uri: str, fields: dict[str, Any], out: Path) -> dict[str, Any]:
        import obstore

        store, key, _ = self._split(uri)
        if not key or key.endswith("/"):
            raise IsADirectoryError(uri)
        options: dict[str, Any] = {}
        if fields.get("version"):
            options["version"] = fields["version"]
        try:
            result = obstore.get(store, key, options=options or None)  # type: ignore[arg-type]
            got = self._fields(dict(result.meta))
            if fields and not _same(fields, got):
                return got  # changed: the caller reports it, nothing is written
            with open(out, "wb") as f:
                for chunk in result.stream(min_chunk_size=_BLOCK):
                    f.write(chunk)
        except FileNotFoundError:
            now = self.current(uri, {}) if options else None
            if now is not None:  # the recorded version is gone, the object was overwritten
                return now
            raise _missing(uri, "no object") from None
        except Exception as exc:
            raise self._fail(exc, "downloading", uri) from None
        return got

    def fetch_tree(self, uri: str, out: Path, root: Path | None = None) -> None:
        super().fetch_tree(uri.rstrip("/") + "/", out, root)


class HTTPResolver(Resolver):
    """http:// and https:// through httpx: ETag or Last-Modified (with the size) from a HEAD,
    else the content's BLAKE3."""

    @staticmethod
    def _client() -> Any:
        import httpx

        return httpx.Client(follow_redirects=True, timeout=60)

    @staticmethod
    def _fields(headers: Any) -> dict[str, Any]:
        """ETag and Last-Modified as the server sends them now (both, for comparing)."""
        from cairn.storage.cloud import normalize_etag

        fields: dict[str, Any] = {}
        etag = normalize_etag(headers.get("etag"))
        if etag:
            fields["etag"] = etag
        if headers.get("last-modified"):
            fields["last_modified"] = headers["last-modified"]
        return fields

    @staticmethod
    def _recorded(fields: dict[str, Any]) -> dict[str, Any]:
        """What is recorded: the ETag when there is one, else Last-Modified."""
        if "etag" in fields:
            return {"etag": fields["etag"]}
        return {"last_modified": fields["last_modified"]} if fields else {}

    def _hash(self, client: Any, uri: str) -> tuple[str, int]:
        hasher = new_hasher(threaded=True)
        size = 0
        with client.stream("GET", uri) as resp:
            self._check_status(resp, uri)
            for block in resp.iter_bytes(_BLOCK):
                hasher.update(block)
                size += len(block)
        return "blake3:" + hasher.hexdigest(), size

    @staticmethod
    def _check_status(resp: Any, uri: str) -> None:
        if resp.status_code in (404, 410):
            raise _missing(uri, f"no resource (HTTP {resp.status_code})")
        if resp.status_code >= 400:
            raise StoreError(f"{uri} answered HTTP {resp.status_code}; check the URL and access")

    def _head(self, client: Any, uri: str) -> tuple[dict[str, Any], int | None]:
        import httpx

        try:
            resp = client.head(uri)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach {uri}: {exc}") from None
        if resp.status_code in (405, 501):  # no HEAD: read it instead
            return {}, None
        self._check_status(resp, uri)
        length = resp.headers.get("content-length")
        return self._fields(resp.headers), int(length) if length is not None else None

    def _now(self, client: Any, uri: str) -> dict[str, Any]:
        fields, size = self._head(client, uri)
        return fields if size is None else {**fields, "size": size}

    def resolve(self, uri: str, max_objects: int) -> list[Found]:
        import httpx

        with self._client() as client:
            fields, size = self._head(client, uri)
            fields = self._recorded(fields)
            if not fields or size is None:
                try:
                    digest, size = self._hash(client, uri)
                except httpx.HTTPError as exc:
                    raise StoreError(f"cannot read {uri}: {exc}") from None
                fields = {"blake3": digest}
        return [Found("", uri, size, fields)]

    def current(self, uri: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        with self._client() as client:
            try:
                if "blake3" in fields:
                    digest, size = self._hash(client, uri)
                    return {"blake3": digest, "size": size}
                return self._now(client, uri)
            except ReferenceMissingError:
                return None

    def fetch(self, uri: str, fields: dict[str, Any], out: Path) -> dict[str, Any]:
        import httpx

        hasher = new_hasher(threaded=True)
        try:
            with self._client() as client, client.stream("GET", uri) as resp:
                self._check_status(resp, uri)
                got = self._fields(resp.headers)
                if fields and "blake3" not in fields and not _same(fields, got):
                    return got
                with open(out, "wb") as f:
                    for block in resp.iter_bytes(_BLOCK):
                        hasher.update(block)
                        f.write(block)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot download {uri}: {exc}") from None
        if "blake3" in fields:
            return {"blake3": "blake3:" + hasher.hexdigest()}
        return got


class URIOnlyResolver(Resolver):
    """A scheme Cairn cannot read: the URI alone is recorded, nothing is checked or fetched."""

    def resolve(self, uri: str, max_objects: int) -> list[Found]:
        return [Found("", uri, 0, {})]

    def current(self, uri: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        return fields

    def fetch(self, uri: str, fields: dict[str, Any], out: Path) -> dict[str, Any]:
        raise _Unfetchable(uri)


class _Unfetchable(Exception):
    pass


def resolver(uri: str) -> Resolver:
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        return FileResolver()
    if scheme in CLOUD_SCHEMES:
        return CloudResolver(scheme)
    if scheme in ("http", "https"):
        return HTTPResolver()
    if not scheme:
        raise InvalidInputError(
            f"{uri!r} is not a URI; write file:///absolute/path, s3://bucket/key, https://…"
        )
    return URIOnlyResolver()


def _same(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the source still holds what was recorded (compares the fields recorded)."""
    return all(now.get(k) == v for k, v in recorded.items())


# --- what the SDK calls ----------------------------------------------------------------------


def resolve(
    uri: str,
    name: str | None = None,
    *,
    checksum: bool = True,
    max_objects: int | None = None,
) -> list[FileEntry]:
    """The entries for a reference to ``uri``: one per object (a folder or prefix expands to
    the objects below it, at ``name/<relative path>``), or, with ``checksum=False``, one entry
    recording the URI alone."""
    limit = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
    if limit < 1:
        raise InvalidInputError(f"max_objects must be at least 1, got {max_objects}")
    parts = urlsplit(uri)
    base = unquote(parts.path.rstrip("/")).rsplit("/", 1)[-1] or parts.netloc
    if not checksum:
        resolver(uri)  # refuses a non-URI
        return [make_entry(name or base, uri, 0, {})]
    found = resolver(uri).resolve(uri, limit)
    entries = []
    for f in found:
        path = (f"{name}/{f.rel}" if name else f.rel) if f.rel else (name or base)
        entries.append(make_entry(path, f.uri, f.size, f.fields))
    return entries


def _write_atomically(
    target: Path,
    fill: Callable[[Path], Any],
    accept: Callable[[Any], bool],
    root: Path | None = None,
) -> Any:
    """Fill a temp file beside ``target`` (locked while written, so a later download removes
    it if this process dies); move it into place only if ``accept(result)``. With ``root``, the
    folders from ``root`` to ``target`` are made first, never through a symlink."""
    from cairn.objects import materialize

    if root is not None:
        materialize.make_folders(root, os.path.relpath(target.parent, root))
    fd, name = materialize.open_tmp(None, str(target))
    tmp = Path(name)
    try:
        result = fill(tmp)
        if tmp.exists() and accept(result):
            os.replace(tmp, target)
        return result
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


@dataclass
class Problem:
    path: str
    uri: str
    kind: str  # "changed" | "missing" | "unfetchable"
    detail: str = ""

    def line(self) -> str:
        return f"{self.kind}: {self.path} ({self.uri}){': ' + self.detail if self.detail else ''}"


def _describe(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    diffs = [f"{k} {v!r} -> {now.get(k)!r}" for k, v in recorded.items() if now.get(k) != v]
    return ", ".join(diffs)


def _fetch_one(path: str, entry: Ref, dest: Path, written: list[Path]) -> Problem | None:
    uri = entry.uri
    fields = entry.fields
    size = entry.size
    res = resolver(uri)
    target = dest / check_path(path)

    def good(got: dict[str, Any]) -> bool:
        return not fields or _same(fields, got)

    def fill(tmp: Path) -> dict[str, Any]:
        got = res.fetch(uri, fields, tmp)
        if fields and tmp.exists() and tmp.stat().st_size != size:
            got = {**got, "size": tmp.stat().st_size}
        return got

    try:
        got = _write_atomically(target, fill, lambda got: good(got) and "size" not in got)
        if good(got) and "size" not in got:
            written.append(target)
    except _Unfetchable:
        return Problem(path, uri, "unfetchable", "Cairn tracks this URI but cannot download it")
    except ReferenceMissingError:
        if fields:
            return Problem(path, uri, "missing")
        try:  # an unchecked reference may name a folder or prefix
            res.fetch_tree(uri, target, dest)
        except ReferenceMissingError:
            return Problem(path, uri, "missing")
        return None
    except IsADirectoryError:
        res.fetch_tree(uri, target, dest)
        return None
    if not good(got):
        return Problem(path, uri, "changed", _describe(fields, got))
    if "size" in got:
        return Problem(path, uri, "changed", f"size {size} -> {got['size']}")
    return None


def download(
    refs: list[tuple[str, Ref]],
    dest: Path,
    *,
    version: str = "",
    allow_missing: bool = False,
    overwrite: bool = False,
    hash_cache: HashCache | None = None,
) -> None:
    """Fetch referenced objects into ``dest`` (at their paths), each checked against what was
    recorded. A reference whose source changed or vanished raises, naming it; with
    ``allow_missing`` vanished ones are skipped with a `ReferenceSkippedWarning`.

    Local files are protected as by `cairn.objects.materialize`: a modified file, a symlink or a
    clash in the way raises `DownloadConflictError` before anything is fetched (unless
    ``overwrite``), and nothing is written through a symlinked folder. Files written are
    recorded in ``hash_cache`` so the next download knows them as its own."""
    if not refs:
        return
    from cairn.objects import materialize

    checked = [
        materialize.Wanted(check_path(p), e.fields.get("blake3", ""), e.size, None)
        for p, e in refs
        if e.fields and not isinstance(resolver(e.uri), URIOnlyResolver)
    ]
    unchecked = [p for p, e in refs if not e.fields]
    materialize.prepare(dest, checked, hash_cache, overwrite=overwrite, folders_only=unchecked)
    written: list[Path] = []
    with ThreadPoolExecutor(min(CONCURRENCY, len(refs))) as pool:
        problems = [p for p in pool.map(lambda r: _fetch_one(r[0], r[1], dest, written), refs) if p]
    materialize.record(hash_cache, written)
    changed = [p for p in problems if p.kind == "changed"]
    missing = [p for p in problems if p.kind == "missing"]
    skipped = [p for p in problems if p.kind == "unfetchable"]
    what = f" of {version}" if version else ""
    if changed:
        raise ReferenceChangedError(
            f"{len(changed)} reference{_s(changed)}{what} changed at the source since "
            f"{'it was' if len(changed) == 1 else 'they were'} logged:\n  "
            + _lines(changed)
            + "\nlog a new version (add_reference again) to accept the new content",
            path=changed[0].path,
        )
    if missing and not allow_missing:
        raise ReferenceMissingError(
            f"{len(missing)} reference{_s(missing)}{what} can no longer be found at the "
            "source:\n  " + _lines(missing) + "\npass allow_missing_references=True to "
            "download the rest without them"
        )
    if missing:
        warnings.warn(
            ReferenceSkippedWarning(
                f"skipped {len(missing)} reference{_s(missing)}{what} no longer at the "
                "source:\n  " + _lines(missing)
            ),
            stacklevel=4,
        )
    if skipped:
        warnings.warn(
            ReferenceSkippedWarning(
                f"not downloaded: {len(skipped)} reference{_s(skipped)}{what} tracked by URI "
                "only (Cairn cannot read the scheme):\n  " + _lines(skipped)
            ),
            stacklevel=4,
        )


def _s(items: list[Any]) -> str:
    return "" if len(items) == 1 else "s"


def _lines(problems: list[Problem], limit: int = 20) -> str:
    shown = "\n  ".join(p.line() for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return shown + more


def check_sources(refs: list[tuple[str, Ref]]) -> list[str]:
    """Drift at the sources, without downloading: one line per reference that changed or
    vanished (metadata requests only, except file:// and servers without ETag)."""

    def one(item: tuple[str, Ref]) -> str | None:
        path, entry = item
        fields = entry.fields
        if not fields:
            return None  # tracked by URI only: nothing to compare
        uri = entry.uri
        now = resolver(uri).current(uri, fields)
        if now is None:
            return Problem(path, uri, "reference missing at the source").line()
        if not _same(fields, now):
            detail = _describe(fields, now)
            return Problem(path, uri, "reference changed at the source", detail).line()
        if now.get("size", entry.size) != entry.size:
            detail = f"size {entry.size} -> {now['size']}"
            return Problem(path, uri, "reference changed at the source", detail).line()
        return None

    if not refs:
        return []
    with ThreadPoolExecutor(min(CONCURRENCY, len(refs))) as pool:
        return [line for line in pool.map(one, refs) if line]


def check_local(local: Path, path: str, entry: Ref) -> list[str]:
    """Problems with the downloaded copy of a reference."""
    fields = entry.fields
    if isinstance(resolver(entry.uri), URIOnlyResolver):
        return []  # never downloaded: tracked by URI only
    try:
        st = local.stat()
    except OSError:
        return [f"missing: {path} (reference to {entry.uri})"]
    if not fields or stat.S_ISDIR(st.st_mode):
        return []  # unchecked reference: any content is what was asked for
    if st.st_size != entry.size:
        return [f"size differs: {path} ({st.st_size} != {entry.size})"]
    if "blake3" in fields and FileResolver._hash(local)[0] != fields["blake3"]:
        return [f"content differs: {path}"]
    return []


__all__ = [
    "ReferenceSkippedWarning",
    "check_local",
    "check_sources",
    "download",
    "make_entry",
    "resolve",
]
