"""Retention through a real server, on SQLite and PostgreSQL: who may set TTLs and policies and
who may apply them, the SDK not knowing it talks to a server, the report's bytes counted on
the server's store, and the server's own schedule (two servers on one PostgreSQL: each version
deleted once)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from server_helpers import Raw

import cairn
from cairn.errors import PermissionDeniedError
from cairn.sdk.backend import get_backend
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts
from cairn.service.retention import Target, changes_of
from cairn.service.sql import SqlRegistry
from cairn.service.sql.retention import SCHEDULE_USER
from cairn.service.sql.webhooks import WebhookStore

# version i of p/big: 5 MiB whose chunks every version shares but for one 64 KiB region, and a
# file of its own; written by this process and by a logger process alike
BIG = """
import random, sys
from pathlib import Path

def write(i, folder):
    data = bytearray(random.Random(7).randbytes(5 << 20))
    at = i * 300_000 % ((5 << 20) - 65536)
    data[at : at + 65536] = random.Random(100 + i).randbytes(65536)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(bytes(data))
    (folder / "own.txt").write_text(f"version {i}")
"""
exec(BIG)
LOGGER = (
    BIG
    + """
import cairn
first, count, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
for i in range(first, first + count):
    write(i, work / f"v{i}")
    with cairn.init(project="p") as run:
        art = cairn.Artifact("big", "model", metadata={"i": i})
        art.add_dir(work / f"v{i}")
        run.log_artifact(art)
    print(art.version, i, flush=True)
"""
)

RawFactory = Callable[[str | None], Raw]
UseServer = Callable[[str | None], None]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    return ServerSettings(database_url=database_url, store=tmp_path / "server-store")


def _log(tmp_path: Path, n: int, *, first: int = 0) -> list[cairn.Artifact]:
    made = []
    for i in range(first, first + n):
        folder = tmp_path / f"v{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "shared.bin").write_bytes(b"s" * 100_000)  # the same in every version
        (folder / "own.txt").write_text(f"version {i} " * 100)
        with cairn.init(project="p") as run:
            art = cairn.Artifact("ckpt", "model", metadata={"loss": 1.0 / (i + 1)})
            art.add_dir(folder)
            run.log_artifact(art)
        made.append(art)
    return made


def test_roles_ttl_policies_and_apply_through_a_server(
    accounts: Accounts, use_server: UseServer, raw: RawFactory, tmp_path: Path
) -> None:
    accounts.create_user("root", admin=True)
    keys = {"root": accounts.create_key("root")[1]}
    for name in ("owner", "writer", "reader"):
        accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    use_server(keys["owner"])
    arts = _log(tmp_path, 4)
    accounts.set_role("p", "writer", "write")
    accounts.set_role("p", "reader", "read")

    # the SDK's art.ttl goes to the server: writers set a version's TTL, readers see it
    use_server(keys["writer"])
    v0 = cairn.Api(project="p").artifact("ckpt:v0")
    v0.ttl = timedelta(days=3)
    use_server(keys["reader"])
    seen = cairn.Api(project="p").artifact("ckpt:v0")
    assert seen.ttl == timedelta(days=3)
    assert seen.expires_at == seen.created_at + timedelta(days=3)
    with pytest.raises(PermissionDeniedError):
        seen.ttl = None

    # policies: project admins only; readers may list them
    target = Target(project="p", artifact="ckpt")
    with pytest.raises(PermissionDeniedError):
        get_backend().retention.set_policy(target, changes_of(keep_last=1))
    use_server(keys["writer"])
    with pytest.raises(PermissionDeniedError):
        get_backend().retention.set_policy(target, changes_of(keep_last=1))
    use_server(keys["owner"])
    get_backend().retention.set_policy(target, changes_of(keep_best=2, by="-loss"))
    get_backend().retention.set_policy(Target(project="p"), changes_of(keep_last=1))
    use_server(keys["reader"])
    rules = {p.target.label(): p.rules() for p in get_backend().retention.policies(project="p")}
    assert rules == {"p": ["keep last 1"], "p/ckpt": ["keep best 2 by loss desc"]}

    # applying: server administrators only (its bytes are counted over the whole store)
    with pytest.raises(PermissionDeniedError, match="server administrators"):
        get_backend().retention.apply(dry_run=True)
    use_server(keys["owner"])
    with pytest.raises(PermissionDeniedError):
        get_backend().retention.apply(dry_run=True)
    use_server(keys["root"])
    report = get_backend().retention.apply()
    # last 1 keeps v3; best 2 by -loss keeps v0 (1.0) and v1 (0.5): v2 goes
    assert [(r.version, r.reason) for r in report.removed] == [(2, "policy")]
    assert report.logical_bytes == arts[2].size
    assert report.referenced_bytes is not None and report.exclusive_bytes is not None
    # the shared 100 kB file stays; only v2's own small file and its tree are freed
    assert 0 < report.exclusive_bytes < 5_000 < 100_000 < report.referenced_bytes
    assert [v.version for v in cairn.Api(project="p").artifact_versions("ckpt")] == [
        "v3",
        "v1",
        "v0",
    ]
    history = cairn.Api(project="p").artifact("ckpt:v0").history()
    assert [(h.field, h.user) for h in history if h.field == "ttl"] == [("ttl", "writer")]
    root = raw(keys["root"])
    v2_id = arts[2].id
    deleted = [h for h in root.get(f"/versions/{v2_id}/history").json()["items"]]
    assert [h["field"] for h in deleted][-2:] == ["retention", "deleted"]
    assert deleted[-1]["user"] == "root"


def test_a_registry_admin_sets_a_collections_link_ttl(
    accounts: Accounts, use_server: UseServer, raw: RawFactory, tmp_path: Path
) -> None:
    accounts.create_user("root", admin=True)
    accounts.create_user("ann")
    accounts.create_user("bob")
    keys = {u: accounts.create_key(u)[1] for u in ("root", "ann", "bob")}
    use_server(keys["root"])
    arts = _log(tmp_path, 2)
    api = cairn.Api()
    api.create_registry("candidates")
    for art in arts:
        art.link("candidates/ckpt")
    root = raw(keys["root"])
    for user, role in (("ann", "admin"), ("bob", "member")):
        answer = root.call("PUT", f"/registries/candidates/members/{user}", json={"role": role})
        assert answer.status_code in (200, 204), answer.text
    target = Target(registry="candidates", collection="ckpt")
    use_server(keys["bob"])
    with pytest.raises(PermissionDeniedError):
        get_backend().retention.set_policy(target, changes_of(ttl="1h"))
    use_server(keys["ann"])
    policy = get_backend().retention.set_policy(target, changes_of(ttl="1h"))
    assert policy.rules() == ["ttl 1h"]
    assert [p.rules() for p in get_backend().retention.policies(registry="candidates")] == [
        ["ttl 1h"]
    ]
    bad = root.call(
        "PUT", "/registries/candidates/collections/ckpt/retention", json={"keep_last": 2}
    )
    assert bad.status_code == 400 and "a TTL only" in bad.json()["error"]["message"]


def test_the_servers_schedule_deletes_expired_versions_once(
    accounts: Accounts,
    use_server: UseServer,
    settings: ServerSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: ServerThread,
) -> None:
    """Two more server processes' worth of schedulers (threads here) on the same database
    evaluate every 0.2 s; each expired version is deleted once, with one history entry."""
    use_server(None)  # an open server: no users
    arts = _log(tmp_path, 3)
    hook = (
        WebhookStore(server.app.state.services.registry.engine)
        .add("http://127.0.0.1:9/hook", project="p", events=["version.*"])[0]
        .id
    )
    for art in arts[:2]:
        art.ttl = timedelta(seconds=1)
    monkeypatch.setenv("CAIRN_RETENTION_INTERVAL", "0.2")
    with ServerThread(settings), ServerThread(settings):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            live = [v.version for v in cairn.Api(project="p").artifact_versions("ckpt")]
            if live == ["v2"]:
                break
            time.sleep(0.2)
        assert live == ["v2"]
        time.sleep(0.6)  # a few more rounds: nothing more happens
    with SqlRegistry(settings.database_url) as registry:
        for art in arts[:2]:
            entries = [(h.field, h.user) for h in registry.history(art.id)]
            assert entries[-2:] == [("expired", SCHEDULE_USER), ("deleted", SCHEDULE_USER)]
            assert [f for f, _ in entries].count("deleted") == 1, entries
        assert registry.resolve("p", "ckpt", "latest").version == 2
        audited = registry.audit_log(action="version.expired")
        assert sorted(a.target for a in audited) == ["p/ckpt:v0", "p/ckpt:v1"]
        assert {a.user for a in audited} == {SCHEDULE_USER}
        hooks = WebhookStore(registry.engine)
        sent = [d.event_type for d in hooks.deliveries(hook, limit=100)]
        assert sent.count("version.expired") == 2 and sent.count("version.deleted") == 2


def test_kept_versions_download_byte_for_byte_after_apply_and_gc(
    accounts: Accounts,
    use_server: UseServer,
    settings: ServerSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept and deleted versions share chunks; another process logs (through the server)
    while retention applies; gc runs with no grace on the server's store; every kept version
    still downloads exactly the bytes it was logged with."""
    from cairn.objects.gc import collect
    from cairn.objects.store import open_object_store
    from cairn.service.liveness import live_objects

    accounts.create_user("root", admin=True)
    key = accounts.create_key("root")[1]
    use_server(key)
    env = {**os.environ, "CAIRN_QUIET": "1", "CAIRN_DIR": str(tmp_path / "logger-home")}

    def logger(first: int, count: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", LOGGER, str(first), str(count), str(tmp_path / "src")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    def finished(proc: subprocess.Popen[str]) -> dict[str, int]:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return {label: int(i) for label, i in (line.split() for line in out.splitlines())}

    logged = finished(logger(0, 4))
    api = cairn.Api(project="p")
    api.create_registry("models")
    api.artifact("big:v0").link("models/big")
    pinned = api.artifact("big:v1")
    pinned.aliases.append("production")
    pinned.save()
    retention = get_backend().retention
    retention.set_policy(Target(project="p", artifact="big"), changes_of(keep_last=1))

    more = logger(4, 3)
    removed: list[int] = []
    while more.poll() is None:
        removed += [r.version for r in retention.apply().removed]
        time.sleep(0.05)
    logged.update(finished(more))
    report = retention.apply()
    removed += [r.version for r in report.removed]
    assert sorted(removed) == [2, 3, 4, 5]

    store = open_object_store(settings.store, cache_dir=tmp_path / "gc-cache", must_exist=True)
    with SqlRegistry(settings.database_url) as registry:
        freed = collect(
            store, lambda: live_objects(registry), grace_seconds=0, dry_run=False
        ).bytes_freed
    store.close()
    assert freed > 0

    # a client with empty caches: every byte comes from the server's store
    monkeypatch.setenv("CAIRN_DIR", str(tmp_path / "reader-home"))
    use_server(key)
    api = cairn.Api(project="p")
    live = [v.version for v in api.artifact_versions("big")]
    assert sorted(live) == ["v0", "v1", "v6"]
    for label in live:
        dest = Path(api.artifact(f"big:{label}").download(tmp_path / "dl" / label))
        write(logged[label], tmp_path / "want" / label)  # type: ignore[name-defined]  # noqa: F821
        for name in ("model.bin", "own.txt"):
            assert (dest / name).read_bytes() == (tmp_path / "want" / label / name).read_bytes()
