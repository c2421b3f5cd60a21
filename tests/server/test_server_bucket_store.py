"""`cairn server --store s3://…` (and gs://, az://): objects in packs on a bucket, shared by
several server processes; with direct transfers, clients upload and download the bytes on
short-lived signed URLs and no object byte goes through the server; a client without access
gets no URL; a pack whose bytes do not match its entries is refused and nothing is indexed; an
expired URL is replaced and the transfer still succeeds; a bad store stops the server at start
with one line. Against the real emulators of tests/storage (moto, fake-gcs-server, Azurite)."""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import Raw, ServerProcess, free_port
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import (
    S3Emulator,
    azure_service,
    gcs_service,
    s3_service,
)

import cairn
from cairn.cli.main import app as cli_app
from cairn.client.objects import HttpObjectStore
from cairn.core.digest import hash_bytes
from cairn.sdk.backend import get_backend, reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts
from cairn.storage import open_storage

__all__ = ["azure_service", "gcs_service", "s3_service"]

API = "/api/v1"
# routes that carry object bytes through the server
FRAMED = {("POST", f"{API}/objects"), ("POST", f"{API}/objects/fetch")}


class Recorder:
    """Remembers the method and path of every request the server gets."""

    def __init__(self, app: ASGIApp, calls: list[tuple[str, str]]) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def bytes_through_server(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The requests that moved object bytes through the server (uploads and downloads)."""
    return [
        (method, path)
        for method, path in calls
        if (method, path) in FRAMED or path.startswith(f"{API}/objects/blake3:")
    ]


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
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., HttpObjectStore]:
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
        return get_backend().object_store

    return point


def bucket_url(request: pytest.FixtureRequest, kind: str) -> str:
    """A fresh bucket on one of the emulators (its environment set for this test)."""
    if kind == "s3":
        service: Any = request.getfixturevalue("s3_service")
        return f"s3://{service.bucket()}/cairn"
    if kind == "gcs":
        service = request.getfixturevalue("gcs_service")
        return f"gs://{service.bucket()}/cairn"
    service = request.getfixturevalue("azure_service")
    return f"az://{service.container()}/cairn"


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


# --- direct transfers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure"])
def test_direct_transfers_move_no_object_bytes_through_the_server(
    kind: str,
    request: pytest.FixtureRequest,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
) -> None:
    url = bucket_url(request, kind)
    server = servers.start(url)
    files = make_files(tmp_path / "data", 300, big=6 << 20)
    object_store = client(server)
    assert log("p", "data", tmp_path / "data") == "v0"
    assert object_store.direct
    assert object_store.upload_requests >= 2  # the files' pack(s), then the trees and chunk lists
    assert object_store.uploaded_bytes >= sum(len(d) for d in files.values())

    reader = client(server, machine="two")  # another machine: an empty download cache
    download_and_compare("p", "data:v0", tmp_path / "out", files)
    assert reader.downloaded_bytes >= sum(len(d) for d in files.values())
    assert reader.download_requests <= 20  # neighbouring objects share a ranged GET
    assert reader.url_refreshes == 0

    calls = servers.calls[server.url]
    assert bytes_through_server(calls) == []
    assert ("POST", f"{API}/objects/packs") in calls
    assert ("POST", f"{API}/objects/locate") in calls
    stored = keys_in(url)
    assert stored["packs"] and len(stored["index"]) == len(stored["packs"])
    assert stored["uploads"] == []  # every uploaded pack was adopted (copied) and removed


def test_proxy_mode_on_a_bucket_sends_objects_through_the_server(
    s3_service: S3Emulator,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
) -> None:
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url, direct=False)
    files = make_files(tmp_path / "data", 200, big=5 << 20)
    object_store = client(server)
    log("p", "data", tmp_path / "data")
    assert not object_store.direct and object_store.bucket_requests == 0
    client(server, machine="two")
    download_and_compare("p", "data:v0", tmp_path / "out", files)

    calls = servers.calls[server.url]
    assert ("POST", f"{API}/objects") in calls and ("POST", f"{API}/objects/fetch") in calls
    assert not [c for c in calls if c[1].startswith(f"{API}/objects/packs")]
    stored = keys_in(url)
    assert stored["packs"] and len(stored["index"]) == len(stored["packs"])
    api = Raw(server.url)
    try:
        assert api.get("/info").json()["objects"]["direct"] is False
        refused = api.post("/objects/packs", json={"count": 1})
        assert refused.status_code == 409, refused.text
        assert "--no-direct" in refused.json()["error"]["message"]
    finally:
        api.close()


def test_a_folder_store_offers_no_direct_transfers(servers: Servers) -> None:
    server = servers.start(None)
    api = Raw(server.url)
    try:
        info = api.get("/info").json()["objects"]
        assert info["store"] == "folder" and info["direct"] is False
        assert api.post("/objects/locate", json={"digests": []}).status_code == 409
    finally:
        api.close()


def test_a_second_client_uploads_nothing_and_a_stranger_adds_no_pack(
    s3_service: S3Emulator,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
) -> None:
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url)
    accounts: Accounts = server.app.state.services.accounts
    accounts.create_user("alice")
    accounts.create_user("bob")
    alice, bob = accounts.create_key("alice")[1], accounts.create_key("bob")[1]
    files = make_files(tmp_path / "data", 150, big=5 << 20)

    client(server, alice, "alice-1")
    log("a", "data", tmp_path / "data")
    packs = keys_in(url)["packs"]

    # alice on another machine: the same files are on the server, nothing is uploaded
    again = client(server, alice, "alice-2")
    log("a", "copy", tmp_path / "data")
    assert again.upload_requests == 0 and again.bucket_requests == 0

    # bob may not read project a: he uploads the bytes (proof he has them), the server
    # verifies them and keeps no second copy
    stranger = client(server, bob, "bob-1")
    log("b", "data", tmp_path / "data")
    assert stranger.upload_requests >= 1
    stored = keys_in(url)
    assert stored["packs"] == packs and len(stored["index"]) == len(packs)
    assert stored["uploads"] == []
    client(server, bob, "bob-2")
    download_and_compare("b", "data:v0", tmp_path / "out", files)


def test_a_client_without_access_gets_no_url(
    s3_service: S3Emulator,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
) -> None:
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url)
    accounts: Accounts = server.app.state.services.accounts
    keys = {}
    for name in ("owner", "reader", "stranger", "other"):
        accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    accounts.set_role("q", "other", "write", create=True)
    files = make_files(tmp_path / "data", 20)
    client(server, keys["owner"])
    log("p", "data", tmp_path / "data")
    accounts.set_role("p", "reader", "read")
    digests = [hash_bytes(d) for d in files.values()]
    apis = {name: Raw(server.url, key) for name, key in keys.items()}
    try:
        # uploading needs write access to some project
        for name in ("reader", "stranger"):
            refused = apis[name].post("/objects/packs", json={"count": 1})
            assert refused.status_code == 403, refused.text
            assert "X-Amz" not in refused.text and "packs" not in refused.json()
        # downloading needs read access to the objects: the same 404 as a download, no URL
        lost = apis["stranger"].post("/objects/locate", json={"digests": digests[:3]})
        assert lost.status_code == 404, lost.text
        assert lost.json()["error"]["code"] == "object_not_found"
        assert "X-Amz" not in lost.text
        fetch = apis["stranger"].post("/objects/fetch", json={"digests": digests[:3]})
        assert fetch.status_code == 404
        # a reader gets URLs, and they work
        found = apis["reader"].post("/objects/locate", json={"digests": digests[:3]})
        assert found.status_code == 200, found.text
        body = found.json()
        pack, offset, length = body["objects"][digests[0]]
        got = httpx.get(
            body["packs"][pack], headers={"Range": f"bytes={offset}-{offset + length - 1}"}
        )
        assert got.status_code == 206 and hash_bytes(got.content) == digests[0]
        # a slot is committed only by whoever got it
        slot = apis["owner"].post("/objects/packs", json={"count": 1}).json()["packs"][0]
        blob = b"owner's new object"
        assert httpx.put(slot["url"], content=blob, headers=slot["headers"]).status_code < 300
        entries = {"entries": [[hash_bytes(blob), 0, len(blob)]]}
        reader = apis["reader"].post(f"/objects/packs/{slot['id']}/commit", json=entries)
        assert reader.status_code == 403
        other = apis["other"].post(f"/objects/packs/{slot['id']}/commit", json=entries)
        assert other.status_code == 404, other.text  # not their upload
        mine = apis["owner"].post(f"/objects/packs/{slot['id']}/commit", json=entries)
        assert mine.status_code == 200 and mine.json()["stored"] == 1
        assert apis["owner"].missing([hash_bytes(blob)]) == set()
        assert apis["reader"].missing([hash_bytes(blob)]) == {hash_bytes(blob)}
    finally:
        for api in apis.values():
            api.close()


def test_a_pack_holding_objects_the_caller_may_not_read_gets_them_no_url(
    s3_service: S3Emulator,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
) -> None:
    """A signed URL opens a whole pack: when dedup left a caller's object in a pack that also
    holds someone else's secret, the caller gets that object through the server instead."""
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url)
    accounts: Accounts = server.app.state.services.accounts
    keys = {}
    for name in ("owner", "stranger"):
        accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    common, secret = b"a file everybody has\n" * 100, b"the owner's secret\n" * 100
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "common.txt").write_bytes(common)
    (tmp_path / "p" / "secret.txt").write_bytes(secret)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "common.txt").write_bytes(common)
    client(server, keys["owner"], "owner")
    log("p", "data", tmp_path / "p")
    packs = keys_in(url)["packs"]
    client(server, keys["stranger"], "stranger")
    log("q", "data", tmp_path / "q")  # uploads common.txt again: verified, not kept
    apis = {name: Raw(server.url, key) for name, key in keys.items()}
    try:
        answer = apis["stranger"].post("/objects/locate", json={"digests": [hash_bytes(common)]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["packs"] == {} and answer.json()["objects"] == {}
        assert answer.json()["fetch"] == [hash_bytes(common)]
        mine = apis["owner"].post("/objects/locate", json={"digests": [hash_bytes(common)]})
        assert len(mine.json()["packs"]) == 1 and mine.json()["fetch"] == []
        (signed,) = mine.json()["packs"]
        assert f"packs/{signed}.pack" in packs
    finally:
        for api in apis.values():
            api.close()
    # the stranger's download still works: that one object comes through the server
    calls = servers.calls[server.url]
    calls.clear()
    client(server, keys["stranger"], "stranger-2")
    download_and_compare("q", "data:v0", tmp_path / "out", {"common.txt": common})
    assert ("POST", f"{API}/objects/fetch") in calls


def test_a_pack_that_does_not_match_its_entries_is_refused_and_nothing_is_indexed(
    s3_service: S3Emulator, servers: Servers
) -> None:
    url = f"s3://{s3_service.bucket()}/cairn"
    server = servers.start(url, max_batch_bytes=1 << 20)
    api = Raw(server.url)

    def upload(data: bytes) -> str:
        slot = api.post("/objects/packs", json={"count": 1}).json()["packs"][0]
        put = httpx.put(slot["url"], content=data, headers=slot["headers"])
        assert put.status_code < 300, put.text
        return str(slot["id"])

    def commit(slot: str, entries: list[list[Any]]) -> httpx.Response:
        return api.post(f"/objects/packs/{slot}/commit", json={"entries": entries})

    good, other = b"the bytes the client claims", b"the bytes it actually sent"
    try:
        # the client claims two objects; the second's bytes are not what it says
        slot = upload(good + other)
        bad = commit(
            slot, [[hash_bytes(good), 0, len(good)], [hash_bytes(b"x" * 26), len(good), 26]]
        )
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["code"] == "integrity"
        assert keys_in(url) == {"packs": [], "index": [], "uploads": []}
        assert api.missing([hash_bytes(good)]) == {hash_bytes(good)}
        assert commit(slot, [[hash_bytes(good), 0, len(good)]]).status_code == 404  # gone

        # entries outside the pack, overlapping, or a pack larger than the server accepts
        slot = upload(good)
        outside = commit(slot, [[hash_bytes(good), 1, len(good)]])
        assert outside.status_code == 400 and "outside" in outside.text
        slot = upload(good + good)
        overlap = commit(slot, [[hash_bytes(good), 0, len(good)], [hash_bytes(good), 5, 27]])
        assert overlap.status_code == 400 and "overlaps" in overlap.text
        slot = upload(os.urandom(1 << 20) + b"!")
        assert commit(slot, []).status_code == 413
        assert commit("0" * 32, [[hash_bytes(good), 0, len(good)]]).status_code == 404
        assert commit("not-a-slot", []).status_code == 400
        assert keys_in(url) == {"packs": [], "index": [], "uploads": []}

        # a pack that is what it says is adopted
        slot = upload(good + other)
        ok = commit(slot, [[hash_bytes(good), 0, len(good)], [hash_bytes(other), 27, 26]])
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"received": 2, "stored": 2, "stored_bytes": 53}
        assert api.missing([hash_bytes(good), hash_bytes(other)]) == set()
        stored = keys_in(url)
        assert len(stored["packs"]) == 1 and len(stored["index"]) == 1 and not stored["uploads"]
    finally:
        api.close()


def test_expired_signed_urls_are_replaced_and_the_transfers_succeed(
    azure_service: Any,
    servers: Servers,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Azurite refuses expired SAS URLs (moto does not check the expiry of presigned URLs).
    URLs live 2 s; the first upload and the first download wait 3.5 s before using theirs."""
    url = f"az://{azure_service.container()}/cairn"
    server = servers.start(url, signed_url_ttl=2)
    original = HttpObjectStore._bucket_request
    delayed: set[str] = set()

    def late(self: HttpObjectStore, method: str, target: str, **kwargs: Any) -> httpx.Response:
        if method not in delayed:
            delayed.add(method)
            time.sleep(3.5)
        return original(self, method, target, **kwargs)

    monkeypatch.setattr(HttpObjectStore, "_bucket_request", late)
    files = make_files(tmp_path / "data", 40)
    writer = client(server)
    log("p", "data", tmp_path / "data")
    assert writer.direct and writer.url_refreshes == 1
    reader = client(server, machine="two")
    download_and_compare("p", "data:v0", tmp_path / "out", files)
    assert reader.url_refreshes == 1
    assert delayed == {"PUT", "GET"}
    assert bytes_through_server(servers.calls[server.url]) == []


# --- several servers, one bucket -------------------------------------------------------------


def test_two_server_processes_share_one_bucket(
    s3_service: S3Emulator,
    postgres_url: str,
    client: Callable[..., HttpObjectStore],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Server A (direct transfers, endpoint from AWS_ENDPOINT_URL) and server B (--no-direct,
    --store-endpoint), each with its own index cache: what one stored, the other serves."""
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
        "--no-direct",
        "--store-endpoint",
        s3_service.endpoint,
        env=env_b,
        log_dir=tmp_path / "server-b",
    )
    try:
        assert "direct transfers on signed URLs valid 900 s" in a.log.read_text()
        assert "objects sent through the server" in b.log.read_text()
        one = make_files(tmp_path / "v0", 120, big=5 << 20)
        client_a = client(a, machine="one")
        log("p", "data", tmp_path / "v0")
        assert client_a.direct

        client_b = client(b, machine="two")
        download_and_compare("p", "data:v0", tmp_path / "out-b", one)  # stored via A
        assert not client_b.direct
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
        direct=False,
        signed_url_ttl=60,
        cache_dir=tmp_path / "cache",
    )
    old = dict(os.environ)
    try:
        os.environ.update(settings.to_env())
        assert ServerSettings.from_env() == settings
    finally:
        os.environ.clear()
        os.environ.update(old)
