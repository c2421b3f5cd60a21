"""`cairn server --store s3://…` (and gs://, az://): objects in packs on a bucket, shared by
several server processes; a bad store stops the server at start with one line. Against the
real emulators of tests/storage (moto)."""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerProcess, free_port
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import S3Emulator, s3_service

import cairn
from cairn.cli.main import app as cli_app
from cairn.client.objects import RemoteObjectStore
from cairn.sdk.backend import get_backend, reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.storage import open_storage

__all__ = ["s3_service"]

API = "/api/v1"


class Recorder:
    """Remembers the method and path of every request the server gets."""

    def __init__(self, app: ASGIApp, calls: list[tuple[str, str]]) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


class Servers:
    """Servers in threads of this process, each on its own index cache, requests recorded."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.running: list[ServerThread] = []
        self.calls: dict[str, list[tuple[str, str]]] = {}

    def start(self, store_url: str | None, **options: Any) -> ServerThread:
        n = len(self.running)
        settings = ServerSettings(
            database_url=self.database_url,
            store=self.tmp_path / f"server-store-{n}",
            store_url=store_url,
            cache_dir=self.tmp_path / f"server-cache-{n}",
            **options,
        )
        server = ServerThread(settings)
        calls: list[tuple[str, str]] = []
        server.app.add_middleware(Recorder, calls=calls)
        server.start()
        self.running.append(server)
        self.calls[server.url] = calls
        return server

    def stop(self) -> None:
        for server in self.running:
            server.stop()


@pytest.fixture
def servers(postgres_url: str, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(postgres_url, tmp_path)
    yield made
    made.stop()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., RemoteObjectStore]:
    """``client(server, key, machine)``: point the SDK at a server, as a machine of its own
    (its own CAIRN_DIR, so its own download cache); returns that machine's object store."""

    def point(
        server: ServerThread | ServerProcess, key: str | None = None, machine: str = "one"
    ) -> Any:
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_DIR", str(tmp_path / f"machine-{machine}"))
        if key:
            monkeypatch.setenv("CAIRN_API_KEY", key)
        else:
            monkeypatch.delenv("CAIRN_API_KEY", raising=False)
        reset_backends()
        return get_backend().odb

    return point


def make_files(root: Path, n: int, *, big: int = 0, seed: int = 1) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files = {f"d{i % 5}/f{i:04d}.bin": rnd.randbytes(rnd.randint(200, 20_000)) for i in range(n)}
    if big:
        files["model.ckpt"] = rnd.randbytes(big)  # chunked (4 MiB and more)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def log(project: str, name: str, folder: Path) -> str:
    with cairn.init(project=project) as run:
        art = cairn.Artifact(name, "dataset")
        art.add_dir(folder)
        run.log_artifact(art)
    return str(art.version)


def download_and_compare(project: str, ref: str, dest: Path, files: dict[str, bytes]) -> None:
    out = Path(cairn.Api(project).artifact(ref).download(dest))
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel


def keys_in(url: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"packs": [], "index": [], "uploads": []}
    for key in open_storage(url).list():
        found.setdefault(key.split("/", 1)[0], []).append(key)
    return found


def test_a_bucket_store_keeps_the_objects_in_packs(
    s3_service: S3Emulator,
    servers: Servers,
    client: Callable[..., RemoteObjectStore],
    tmp_path: Path,
) -> None:
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url)
    files = make_files(tmp_path / "data", 200, big=5 << 20)
    odb = client(server)
    log("p", "data", tmp_path / "data")
    assert odb.upload_requests >= 2
    client(server, machine="two")
    download_and_compare("p", "data:v0", tmp_path / "out", files)

    calls = servers.calls[server.url]
    assert ("POST", f"{API}/objects") in calls and ("POST", f"{API}/objects/fetch") in calls
    stored = keys_in(url)
    assert stored["packs"] and len(stored["index"]) == len(stored["packs"])


# --- several servers, one bucket -------------------------------------------------------------


def test_two_server_processes_share_one_bucket(
    s3_service: S3Emulator,
    postgres_url: str,
    client: Callable[..., RemoteObjectStore],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Server A (endpoint from AWS_ENDPOINT_URL) and server B (--store-endpoint), each with
    its own index cache: what one stored, the other serves."""
    url = f"s3://{s3_service.bucket()}/cairn"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    a = ServerProcess(
        postgres_url,
        url,
        env={**base, "CAIRN_DIR": str(tmp_path / "server-a")},
        log_dir=tmp_path / "server-a",
    )
    env_b = {**base, "CAIRN_DIR": str(tmp_path / "server-b")}
    env_b.pop("AWS_ENDPOINT_URL")
    b = ServerProcess(
        postgres_url,
        url,
        "--store-endpoint",
        s3_service.endpoint,
        env=env_b,
        log_dir=tmp_path / "server-b",
    )
    try:
        assert f"store {url}, http" in a.log.read_text()
        one = make_files(tmp_path / "v0", 120, big=5 << 20)
        client_a = client(a, machine="one")
        log("p", "data", tmp_path / "v0")
        assert client_a.uploaded_bytes > 0

        client_b = client(b, machine="two")
        download_and_compare("p", "data:v0", tmp_path / "out-b", one)  # stored via A
        two = {**one, "new.txt": b"only in v1"}
        (tmp_path / "v0" / "new.txt").write_bytes(b"only in v1")
        assert log("p", "data", tmp_path / "v0") == "v1"
        # B knew A's objects: it asked for the new file and the trees only
        assert client_b.uploaded_bytes < 100_000

        client(a, machine="three")
        download_and_compare("p", "data:v1", tmp_path / "out-a", two)  # new file via B
    finally:
        a.stop()
        b.stop()


# --- starting the server ---------------------------------------------------------------------


def test_a_bad_store_stops_the_server_at_start_with_one_line(
    s3_service: S3Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"

    def start(*args: str) -> str:
        result = CliRunner().invoke(
            cli_app, ["server", "--database-url", db, *args], catch_exceptions=False
        )
        assert result.exit_code != 0, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        return lines[0]

    missing = start("--store", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/cairn")
    assert "does not exist" in missing and "no-such-bucket" in missing
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    began = time.monotonic()
    closed = start(
        "--store",
        f"s3://{s3_service.bucket()}/cairn",
        "--store-endpoint",
        f"http://127.0.0.1:{free_port()}",
    )
    assert "cannot open the object store" in closed, closed
    assert time.monotonic() - began < 60
    assert "use a folder, or a bucket" in start("--store", "ftp://host/x")
    assert "--store-endpoint needs a bucket" in start("--store-endpoint", "http://x")


def test_worker_processes_get_the_bucket_settings(tmp_path: Path) -> None:
    settings = ServerSettings(
        database_url="sqlite:///x.db",
        store=tmp_path / "store",
        store_url="s3://bucket/prefix",
        store_endpoint="http://127.0.0.1:9000",
        cache_dir=tmp_path / "cache",
    )
    old = dict(os.environ)
    try:
        os.environ.update(settings.to_env())
        assert ServerSettings.from_env() == settings
    finally:
        os.environ.clear()
        os.environ.update(old)
