"""`cairn check`, the repair path, a damaged index.db, and a full disk: a damaged store says
what is damaged and which versions use it, and logging the same files again repairs it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import require

import cairn
from cairn.errors import IntegrityError, StoreError
from cairn.objects.check import check, rebuild_index
from cairn.objects.packs.format import read_footer
from cairn.objects.packs.local import LocalPackStore
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread

CLI = [sys.executable, "-c", "from cairn.cli.main import main; main()"]


@pytest.fixture(autouse=True)
def _fresh(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.delenv("CAIRN_URL", raising=False)
    monkeypatch.delenv("CAIRN_STORE", raising=False)
    reset_backends()
    yield
    reset_backends()


def _files(root: Path, n: int, seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files = {f"f{i}.bin": rnd.randbytes(rnd.randint(1000, 50_000)) for i in range(n)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _log(name: str, folder: Path) -> str:
    with cairn.init(project="p", save_code=False) as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)
    return f"p/{name}:{art.version}"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env or dict(os.environ), capture_output=True, text=True, timeout=300
    )


def _store() -> Path:
    return Path(os.environ["CAIRN_DIR"]) / "store"


def _flip(path: Path, offset: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        byte = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([byte[0] ^ 0xFF]), offset)
    finally:
        os.close(fd)


def _damage_object(digest: str) -> None:
    store = LocalPackStore(_store())
    pack, offset, length = store.locate(digest)
    store.close()
    _flip(store.pack_path(pack), offset + length // 2)


def test_every_pack_ends_with_a_footer_listing_its_objects(tmp_path: Path) -> None:
    _files(tmp_path / "a", 20, seed=1)
    _log("a", tmp_path / "a")
    store = LocalPackStore(_store())
    rows = store.index.rows()
    (pack,) = {r[1] for r in rows}
    data = store.pack_path(pack).read_bytes()
    found = read_footer(lambda offset, length: data[offset : offset + length], len(data))
    assert found is not None
    assert {(d, o, n) for d, o, n in found[2]} == {(d, o, n) for d, _p, o, n in rows}
    store.close()


def test_check_read_data_names_the_damaged_versions_and_a_relog_repairs(tmp_path: Path) -> None:
    files = _files(tmp_path / "a", 10, seed=2)
    other = _files(tmp_path / "b", 5, seed=3)
    _log("a", tmp_path / "a")
    _log("b", tmp_path / "b")
    digest = cairn.Api("p").artifact("p/a:v0").files()[3].digest
    _damage_object(digest)
    reset_backends()

    quick = _cli("check", "--json")
    assert quick.returncode == 0, quick.stderr  # bytes are not read without --read-data
    assert json.loads(quick.stdout)["ok"] is True

    deep = _cli("check", "--read-data", "--json")
    assert deep.returncode == 1, deep.stderr
    report = json.loads(deep.stdout)
    assert report["damaged"] == [digest]
    assert report["affected_versions"] == ["p/a:v0"]  # not p/b

    # the damaged object is forgotten: a re-log of the same files stores it again
    _log("a", tmp_path / "a")
    reset_backends()
    assert _cli("check", "--read-data").returncode == 0
    out = Path(cairn.Api("p").artifact("p/a:v0").download(tmp_path / "out"))
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    out_b = Path(cairn.Api("p").artifact("p/b:v0").download(tmp_path / "out_b"))
    for name, data in other.items():
        assert (out_b / name).read_bytes() == data


def test_a_download_that_meets_damage_makes_its_message_true(tmp_path: Path) -> None:
    """ "Log the data again to repair the store" must work: the download forgets the damaged
    object, and the re-log stores it again."""
    files = _files(tmp_path / "a", 6, seed=4)
    _log("a", tmp_path / "a")
    digest = cairn.Api("p").artifact("p/a:v0").files()[0].digest
    _damage_object(digest)
    reset_backends()
    with pytest.raises(IntegrityError, match="log the data again to repair the store"):
        cairn.Api("p").artifact("p/a:v0").download(tmp_path / "bad")
    _log("a", tmp_path / "a")
    out = Path(cairn.Api("p").artifact("p/a:v0").download(tmp_path / "good"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_missing_and_truncated_packs_are_damage(tmp_path: Path) -> None:
    _files(tmp_path / "a", 4, seed=5)
    _log("a", tmp_path / "a")
    store = LocalPackStore(_store())
    (pack,) = {r[1] for r in store.index.rows()}
    path = store.pack_path(pack)
    os.truncate(path, 100)
    report = check(store, lambda: [], read_data=False)
    assert not report.ok and len(report.damaged) >= 4
    path.unlink()
    report = check(LocalPackStore(_store()), None)
    assert report.ok  # what was damaged is forgotten: nothing left to complain about
    store.close()


def test_a_garbled_index_says_what_to_run_and_a_rebuild_restores_it(tmp_path: Path) -> None:
    files = _files(tmp_path / "a", 12, seed=6)
    _log("a", tmp_path / "a")
    reset_backends()
    index = _store() / "index.db"
    for suffix in ("-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    index.write_bytes(random.Random(7).randbytes(8192))
    with pytest.raises(StoreError, match=r"damaged.*cairn check --rebuild-index"):
        LocalPackStore(_store())
    failed = _cli("artifact", "get", "p/a:v0", "--root", str(tmp_path / "x"))
    assert failed.returncode != 0 and "cairn check --rebuild-index" in failed.stderr

    rebuilt = _cli("check", "--rebuild-index", "--read-data")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "Rebuilt" in rebuilt.stdout
    assert list(_store().glob("index.db.damaged-*"))  # the old file is kept
    reset_backends()
    out = Path(cairn.Api("p").artifact("p/a:v0").download(tmp_path / "out"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_rebuild_prefers_the_good_copy_of_an_object_stored_twice(tmp_path: Path) -> None:
    files = _files(tmp_path / "a", 5, seed=8)
    _log("a", tmp_path / "a")
    digest = cairn.Api("p").artifact("p/a:v0").files()[2].digest
    _damage_object(digest)
    reset_backends()
    assert _cli("check", "--read-data").returncode == 1  # forgotten
    _log("a", tmp_path / "a")  # stored again, in a second pack
    reset_backends()
    report = rebuild_index(_store())  # without --read-data: both copies are in footers
    assert report.objects >= 5 and report.from_footers == 2
    out = Path(cairn.Api("p").artifact("p/a:v0").download(tmp_path / "out"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_the_server_never_answers_200_with_damaged_bytes(tmp_path: Path) -> None:
    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", store=tmp_path / "server-store"
    )
    with ServerThread(settings) as server:
        data = os.urandom(5000)
        from cairn.core.digest import hash_bytes

        digest = hash_bytes(data)
        with httpx.Client(base_url=server.url + "/api/v1") as http:
            put = http.put(f"/objects/{digest}", content=data)
            assert put.status_code < 300, put.text
            assert http.get(f"/objects/{digest}").content == data
            store = LocalPackStore(settings.store)
            pack, offset, _length = store.locate(digest)
            store.close()
            _flip(store.pack_path(pack), offset + 10)
            got = http.get(f"/objects/{digest}")
            assert got.status_code != 200
            assert got.json()["error"]["code"] == "integrity"
            # and it is forgotten: the next upload stores it again
            assert http.put(f"/objects/{digest}", content=data).status_code < 300
            assert http.get(f"/objects/{digest}").content == data


def test_a_full_disk_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    require(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        home = mount / "home"
        env = {**os.environ, "CAIRN_DIR": str(home), "CAIRN_QUIET": "1"}
        big = tmp_path / "big"
        rnd = random.Random(9)
        for i in range(8):
            (big / f"f{i}.bin").parent.mkdir(parents=True, exist_ok=True)
            (big / f"f{i}.bin").write_bytes(rnd.randbytes(5_000_000))
        failed = _cli("push", str(big), "-p", "p", "-n", "big", env=env)
        assert failed.returncode != 0
        assert "disk full" in failed.stderr and str(home / "store") in failed.stderr
        assert "cairn gc" in failed.stderr  # what to free
        assert list((home / "store" / "tmp").iterdir()) == []
        assert list((home / "store" / "packs").rglob("*.pack")) == []
        # once there is room, logging works, with nothing to clean up first
        for i in range(3, 8):
            (big / f"f{i}.bin").unlink()
        ok = _cli("push", str(big), "-p", "p", "-n", "big", env=env)
        assert ok.returncode == 0, ok.stderr
        checked = _cli("check", "--read-data", "--json", env=env)
        assert checked.returncode == 0 and json.loads(checked.stdout)["unindexed_packs"] == 0
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def test_check_is_refused_through_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "CAIRN_URL": "http://127.0.0.1:9"}
    done = _cli("check", env=env)
    assert done.returncode != 0 and "where the store is" in done.stderr
