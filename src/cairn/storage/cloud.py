"""Object storage backends: Amazon S3 (and S3-compatible services), Google Cloud Storage and
Azure Blob Storage, all through `obstore <https://developmentseed.org/obstore/>`_.

URLs: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``. Every key is
stored under ``prefix/``. A URL may carry ``?endpoint=…`` (an S3-compatible service, an
emulator), ``?region=…`` (S3) and ``?account=…`` (Azure); otherwise the services' usual
environment variables are read (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``STORAGE_EMULATOR_HOST``,
``AZURE_STORAGE_ACCOUNT_NAME``, ``AZURE_STORAGE_ENDPOINT`` …).

Credentials come from where each cloud's own tools look (environment variables, instance and
workload identity, ``~/.aws`` profiles through boto3 when it is installed, Google application
default credentials, Azure CLI …). Cairn never stores them.

How the `Storage` contract maps onto the services:

- ``put`` is a conditional write (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, Azure
  ``If-None-Match: *``): a key that exists is never clobbered and ``put`` returns False. A
  service that does not support conditional writes (older S3-compatible servers) falls back to
  a HEAD then a PUT, which is safe for content-addressed keys (both writers write the same
  bytes).
- ``missing`` issues HEAD requests in parallel (up to ``HEAD_CONCURRENCY`` at once).
- ``list`` pages through the service's listing (lexicographic, as every service returns it).
- ``sync`` does nothing: a PUT that returned is durable.
- ``signed_url`` and ``copy`` (inside the service) are the optional capabilities the server's
  direct-transfer mode uses.
"""

from __future__ import annotations

import builtins
import io
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, quote, urlsplit

from cairn.errors import ObjectNotFoundError, StoreError
from cairn.storage.base import Signer

if TYPE_CHECKING:
    from obstore.store import AzureStore, GCSStore, S3Store

    CloudStore = S3Store | GCSStore | AzureStore

SCHEMES = {"s3": "s3", "gs": "gcs", "az": "azure"}
HEAD_CONCURRENCY = 32
_OPEN_IN_MEMORY = 8 << 20  # open() reads values up to this size in one GET

_INSTALL_HINT = "pip install 'cairn[{extra}]'"


_PID: int | None = None  # the process that made obstore's first request


def check_fork(first_use: bool = True) -> None:
    """Refuse (rather than hang) in a child forked after obstore was used: obstore's I/O
    threads stay in the parent, so a request in the child would wait forever."""
    global _PID
    pid = os.getpid()
    if _PID is None:
        if first_use:
            _PID = pid
    elif pid != _PID:
        raise StoreError(
            "object storage (s3://, gs://, az://) was used before this process was forked, and "
            "its client cannot run in a forked child; start worker processes with "
            "multiprocessing's 'spawn' or 'forkserver' method, or use the store only in them"
        )


def _import_obstore(scheme: str) -> Any:
    try:
        import obstore
        import obstore.store
    except ImportError:
        extra = SCHEMES.get(scheme, "s3")
        raise StoreError(
            f"{scheme}:// storage needs the obstore package, which is not installed: "
            f"{_INSTALL_HINT.format(extra=extra)}"
        ) from None
    return obstore


# --- URLs and clients ----------------------------------------------------------------------


class CloudURL:
    """A parsed ``scheme://bucket/prefix?options`` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        if self.scheme not in SCHEMES:
            raise StoreError(
                f"storage scheme {self.scheme!r} is not supported; use s3://, gs://, az:// "
                "or a local folder"
            )
        self.bucket = parts.netloc
        if not self.bucket:
            raise StoreError(f"{url!r} names no bucket; write {self.scheme}://BUCKET/PREFIX")
        self.prefix = parts.path.strip("/")
        query = parse_qs(parts.query)
        self.options = {k: v[-1] for k, v in query.items()}
        unknown = set(self.options) - {"endpoint", "region", "account"}
        if unknown:
            raise StoreError(
                f"unknown option {sorted(unknown)[0]!r} in storage URL {url!r}; "
                "known: endpoint, region, account"
            )

    def canonical(self) -> str:
        url = f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")
        opts = [
            f"{k}={quote(v, safe=':/')}"
            for k, v in sorted(self.options.items())
            if k in ("endpoint", "region", "account")
        ]
        return url + ("?" + "&".join(opts) if opts else "")


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _boto3_provider() -> Any:
    """Credentials from boto3's chain (profiles in ~/.aws, SSO …) when the environment does
    not hold keys and boto3 is installed; else None (obstore's own chain: environment,
    web identity, container and instance credentials)."""
    if _env("AWS_ACCESS_KEY_ID") or not (
        _env("AWS_PROFILE")
        or Path("~/.aws/credentials").expanduser().exists()
        or Path("~/.aws/config").expanduser().exists()
    ):
        return None
    try:
        import boto3  # type: ignore[import-untyped]
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    session = boto3.Session()
    if session.get_credentials() is None:
        return None
    return Boto3CredentialProvider(session)


def _s3_region(bucket: str, endpoint: str | None) -> str | None:
    region = _env("AWS_REGION", "AWS_DEFAULT_REGION")
    if region or endpoint:
        return region
    try:  # AWS answers any request for a bucket with its region, even unauthenticated ones
        import httpx

        r = httpx.head(f"https://{bucket}.s3.amazonaws.com", timeout=10)
        found = r.headers.get("x-amz-bucket-region")
        return str(found) if found else None
    except Exception:
        return None


_clients: dict[tuple[str, ...], Any] = {}
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "GOOGLE_BASE_URL",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
)
_clients_lock = threading.Lock()


def client(
    scheme: str, bucket: str, prefix: str = "", options: dict[str, str] | None = None
) -> CloudStore:
    """An obstore store for one bucket (shared per process: clients pool connections)."""
    check_fork(first_use=False)
    options = options or {}
    # the environment names the endpoint and credentials: a change of it is a new client
    env = tuple(os.environ.get(name, "") for name in _CLIENT_ENV)
    key = (scheme, bucket, prefix, repr(sorted(options.items())), *env)
    with _clients_lock:
        store = _clients.get(key)
        if store is None:
            store = _make_client(scheme, bucket, prefix, options)
            _clients[key] = store
        return store  # type: ignore[no-any-return]


def _make_client(scheme: str, bucket: str, prefix: str, options: dict[str, str]) -> Any:
    obstore = _import_obstore(scheme)
    stores = obstore.store
    pre = prefix or None
    endpoint = options.get("endpoint")
    try:
        if scheme == "s3":
            endpoint = endpoint or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
            kwargs: dict[str, Any] = {}
            if endpoint:
                kwargs["endpoint"] = endpoint
            region = options.get("region") or _s3_region(bucket, endpoint)
            if region:
                kwargs["region"] = region
            provider = _boto3_provider()
            if provider is not None:
                kwargs["credential_provider"] = provider
            return stores.S3Store(
                bucket,
                prefix=pre,
                client_options={"allow_http": bool(endpoint and endpoint.startswith("http:"))},
                **kwargs,
            )
        if scheme == "gs":
            endpoint = endpoint or _env("GOOGLE_BASE_URL", "STORAGE_EMULATOR_HOST")
            kwargs = {}
            if endpoint:
                if "://" not in endpoint:
                    endpoint = "http://" + endpoint
                kwargs["base_url"] = endpoint.rstrip("/")
                if not _env(
                    "GOOGLE_SERVICE_ACCOUNT",
                    "GOOGLE_SERVICE_ACCOUNT_PATH",
                    "GOOGLE_SERVICE_ACCOUNT_KEY",
                    "GOOGLE_APPLICATION_CREDENTIALS",
                ):
                    kwargs["skip_signature"] = True  # an emulator without credentials
            return stores.GCSStore(
                bucket,
                prefix=pre,
                client_options={"allow_http": bool(endpoint and endpoint.startswith("http:"))},
                **kwargs,
            )
        if scheme == "az":
            endpoint = endpoint or _env("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT")
            kwargs = {}
            if endpoint:
                kwargs["endpoint"] = endpoint
            account = options.get("account")
            if account:
                kwargs["account_name"] = account
            return stores.AzureStore(
                bucket,
                prefix=pre,
                client_options={"allow_http": bool(endpoint and endpoint.startswith("http:"))},
                **kwargs,
            )
    except (ValueError, obstore.exceptions.BaseError) as exc:
        raise StoreError(f"cannot configure {scheme}://{bucket}: {_first_line(exc)}") from None
    raise StoreError(f"storage scheme {scheme!r} is not supported")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n", 1)[0]
    return text[:400]


def translate(exc: BaseException, what: str, where: str, key: str = "") -> Exception:
    """A Cairn error for an obstore failure."""
    import obstore.exceptions as oe

    text = str(exc)
    if any(code in text for code in ("NoSuchBucket", "ContainerNotFound", "bucket does not exist")):
        return StoreError(
            f"{what} {where} failed: the bucket (or container) does not exist; create it or "
            "check the URL"
        )
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFoundError(f"{key or where} is not in {where}", key)
    if isinstance(exc, oe.PermissionDeniedError | oe.UnauthenticatedError):
        return StoreError(
            f"{what} {where} was refused ({_first_line(exc)}); check the credentials this "
            "machine uses for the service (environment variables, profile, identity)"
        )
    return StoreError(f"{what} {where} failed: {_first_line(exc)}")


def normalize_etag(etag: str | None) -> str | None:
    """ETags without quotes or a weak marker (listings and HEADs quote them differently)."""
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"') or None


# --- the Storage backend -------------------------------------------------------------------


class _Reader(io.RawIOBase):
    """A seekable reader over an obstore ReadableFile (for values too large to read whole)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = memoryview(data)
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class CloudStorage:
    """`Storage` over one bucket (or container) and prefix of an object storage service."""

    def __init__(self, url: str) -> None:
        parsed = CloudURL(url)
        self.scheme = parsed.scheme
        self.bucket = parsed.bucket
        self.prefix = parsed.prefix
        self.url = parsed.canonical()
        self._display = f"{parsed.scheme}://{parsed.bucket}/{parsed.prefix}".rstrip("/")
        self.store = client(parsed.scheme, parsed.bucket, parsed.prefix, parsed.options)
        self._obstore = _import_obstore(parsed.scheme)
        self._conditional = True
        self.signer: Signer | None = self
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<CloudStorage {self.url}>"

    @property
    def _obs(self) -> Any:
        check_fork()
        return self._obstore

    def _fail(self, exc: BaseException, what: str, key: str = "") -> Exception:
        return translate(exc, what, self._display, key)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(HEAD_CONCURRENCY, thread_name_prefix="cairn-head")
            return self._pool

    # --- reads -----------------------------------------------------------------------------
    def head(self, key: str) -> dict[str, Any]:
        """The object's metadata: ``size``, ``e_tag``, ``version``, ``last_modified``."""
        try:
            return dict(self._obs.head(self.store, key))
        except Exception as exc:
            raise self._fail(exc, "reading", key) from None

    def exists(self, key: str) -> bool:
        try:
            self._obs.head(self.store, key)
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._fail(exc, "checking", key) from None

    def missing(self, keys: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        if len(wanted) <= 1:
            return {k for k in wanted if not self.exists(k)}
        found = self._executor().map(self.exists, wanted)
        return {k for k, there in zip(wanted, found, strict=True) if not there}

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._obs.get(self.store, key).bytes())
        except Exception as exc:
            raise self._fail(exc, "reading", key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a value from ``offset`` (one ranged GET)."""
        if length == 0:
            return b""
        try:
            return bytes(self._obs.get_range(self.store, key, start=offset, length=length))
        except Exception as exc:
            raise self._fail(exc, "reading", key) from None

    def iter_bytes(self, key: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        """A value's bytes front to back, in pieces of about ``chunk`` bytes, from one GET."""
        try:
            stream = self._obs.get(self.store, key).stream(min_chunk_size=chunk)
            for piece in stream:
                yield bytes(piece)
        except Exception as exc:
            raise self._fail(exc, "reading", key) from None

    def open(self, key: str) -> BinaryIO:
        size = self.size(key)
        if size <= _OPEN_IN_MEMORY:
            return io.BytesIO(self.get(key))
        try:
            inner = self._obs.open_reader(self.store, key, buffer_size=4 << 20, size=size)
        except Exception as exc:
            raise self._fail(exc, "reading", key) from None
        return io.BufferedReader(_Reader(inner), buffer_size=4 << 20)

    def size(self, key: str) -> int:
        return int(self.head(key)["size"])

    def list(self, prefix: str = "") -> Iterator[str]:
        # the services list by path segment ('a/b' is not a prefix of 'a/bc'): list the folder
        # holding the prefix and keep the keys that start with it, stopping past them
        folder = prefix.rpartition("/")[0]
        try:
            stream = self._obs.list(self.store, folder or None, chunk_size=1000)
            for batch in stream:
                for meta in batch:
                    key = meta["path"]
                    if key.startswith(prefix):
                        yield key
                    elif key > prefix:
                        return
        except Exception as exc:
            raise self._fail(exc, "listing", prefix) from None

    def list_info(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        """Like ``list``, with each value's size and last-modified time (Unix seconds, the
        service's clock) from the same listing (garbage collection ages packs with it)."""
        folder = prefix.rpartition("/")[0]
        try:
            stream = self._obs.list(self.store, folder or None, chunk_size=1000)
            for batch in stream:
                for meta in batch:
                    key = meta["path"]
                    if key.startswith(prefix):
                        yield key, int(meta["size"]), meta["last_modified"].timestamp()
                    elif key > prefix:
                        return
        except Exception as exc:
            raise self._fail(exc, "listing", prefix) from None

    # --- writes ----------------------------------------------------------------------------
    def put(self, key: str, data: bytes | memoryview) -> bool:
        oe = self._obs.exceptions
        if self._conditional:
            try:
                self._obs.put(self.store, key, data, mode="create", use_multipart=False)
                return True
            except (oe.AlreadyExistsError, oe.PreconditionError):
                return False
            except oe.NotSupportedError:
                self._conditional = False
            except Exception as exc:
                if "501" not in str(exc) and "NotImplemented" not in str(exc):
                    raise self._fail(exc, "writing", key) from None
                self._conditional = False
        # no conditional writes: check, then write (same bytes for a content-addressed key)
        if self.exists(key):
            return False
        try:
            self._obs.put(self.store, key, data, use_multipart=False)
        except Exception as exc:
            raise self._fail(exc, "writing", key) from None
        return True

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        buf = bytearray(length)
        view = memoryview(buf)
        done = 0
        while done < length:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise EOFError(f"source ended before {length} bytes")
            done += n
        return self.put(key, view)

    def delete(self, key: str) -> None:
        try:
            self._obs.delete(self.store, key)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._fail(exc, "deleting", key) from None

    def sync(self) -> None:
        pass  # a completed PUT is durable

    def local_path(self, key: str) -> Path | None:
        return None

    def copy(self, src: str, dst: str) -> None:
        """Copy a value to another key inside the service (the bytes do not come here).
        ``dst`` is overwritten: callers copy to keys nobody else writes."""
        try:
            self._obs.copy(self.store, src, dst, overwrite=True)
        except Exception as exc:
            raise self._fail(exc, "copying", src) from None

    # --- signing (the `Signer` of object storage) ----------------------------------------
    def signed_url(self, key: str, method: str = "GET", expires: float | timedelta = 3600) -> str:
        """A URL that lets its holder ``method`` (GET or PUT) this key without credentials,
        valid for ``expires`` seconds (a timedelta is accepted too)."""
        return str(self.signed_urls([key], method, expires)[0])

    def signed_urls(
        self, keys: Sequence[str], method: str = "GET", expires: float | timedelta = 3600
    ) -> builtins.list[str]:
        """`signed_url` for many keys at once."""
        if not keys:
            return []
        if not isinstance(expires, timedelta):
            expires = timedelta(seconds=expires)
        try:
            urls = self._obs.sign(self.store, method.upper(), list(keys), expires)
        except Exception as exc:
            raise self._fail(exc, "signing a URL for", keys[0]) from None
        return [str(u) for u in urls]

    def signed_put_headers(self) -> dict[str, str]:
        """Headers a PUT on a `signed_url` must carry (Azure needs the blob type)."""
        return {"x-ms-blob-type": "BlockBlob"} if self.scheme == "az" else {}
