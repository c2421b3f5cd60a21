"""Fixtures for the reference tests: the object storage emulators of tests/storage, a small
local web server, and a fresh SDK backend per test."""

from __future__ import annotations

import email.utils
import hashlib
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import azure_service, gcs_service, s3_service

import cairn.sdk.run as run_module
from cairn.sdk.backend import reset_backends

__all__ = ["azure_service", "gcs_service", "s3_service"]


@pytest.fixture(autouse=True)
def sdk_env(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_module, "_current", None)
    reset_backends()
    yield cairn_env
    run_module._current = None
    reset_backends()


class WebServer:
    """Serves the files of ``root`` at ``/<mode>/<name>``; mode says which validators the
    responses carry: ``etag`` (ETag and Last-Modified), ``lm`` (Last-Modified only) or
    ``plain`` (neither, so a client must read the content to know it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self, body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                _, mode, name = self.path.split("/", 2)
                path = server.root / name
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                if mode == "etag":
                    self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
                if mode in ("etag", "lm"):
                    mtime = path.stat().st_mtime
                    self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve(True)

            def do_HEAD(self) -> None:
                self._serve(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = WebServer(root)
    yield server
    server.close()
