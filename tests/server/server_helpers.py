"""Helpers of the server tests: a raw HTTP client, framed object bodies, server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cairn.core.digest import hash_bytes
from cairn.wire import OBJECTS_TYPE, frame_header

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[2] / "src")


class Raw:
    """Plain HTTP calls to ``/api/v1`` (no SDK), to see exactly what the server answers."""

    def __init__(self, url: str, key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60)

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def upload(self, objects: list[bytes]) -> httpx.Response:
        return self.client.post(
            "/objects", content=frames(objects), headers={"Content-Type": OBJECTS_TYPE}
        )

    def missing(self, digests: list[str]) -> set[str]:
        response = self.client.post("/objects/missing", json={"digests": digests})
        assert response.status_code == 200, response.text
        return set(response.json()["missing"])


def frames(objects: list[bytes]) -> bytes:
    return b"".join(frame_header(hash_bytes(o), len(o)) + o for o in objects)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cairn_cmd(*args: str) -> list[str]:
    return [PY, "-c", "from cairn.cli.main import main; main()", *args]


class ServerProcess:
    """`cairn server` in a process of its own (as users run it)."""

    def __init__(
        self,
        database_url: str,
        store: Path | str,
        *extra: str,
        env: dict[str, str],
        log_dir: Path | None = None,
        port: int | None = None,
    ) -> None:
        """``store``: a folder, or a bucket URL (then ``log_dir`` says where the log goes);
        ``port``: a given one (another server's, to restart it), else a free one."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder = log_dir or (store.parent if isinstance(store, Path) else None)
        assert folder is not None, "a bucket store needs a log_dir"
        self.log = folder / f"server-{self.port}.log"
        folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cairn_cmd(
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *(["--database-url", database_url] if database_url else []),
                "--store",
                str(store),
                "--log-level",
                "warning",
                *extra,
            ),
            env={**env, "PYTHONPATH": SRC},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cairn server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cairn server did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def rss_kib(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def client_env(url: str, key: str | None, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_URL": url, "CAIRN_DIR": str(home), "CAIRN_QUIET": "1", "PYTHONPATH": SRC})
    if key:
        env["CAIRN_API_KEY"] = key
    return env
