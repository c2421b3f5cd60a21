"""Ctrl-C can land right after the local store's index committed a pack's rows, before the
writer forgets what it indexed: the pack must stay. (Seen with `cairn push --workers`: the
next push failed with "pack … is missing from the store; the store is damaged".)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cairn
from cairn.core.digest import hash_bytes
from cairn.objects.packs.index import PackIndex
from cairn.objects.packs.local import LocalPackStore
from cairn.sdk.backend import reset_backends


def _interrupt_after_commit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the next index commit succeed, then raise KeyboardInterrupt (as a SIGINT that
    arrived during the commit's fsync is raised as soon as it returns)."""
    real = PackIndex.add
    hits: list[int] = []

    def add(self: PackIndex, rows: object, *, replace: bool = False) -> None:
        real(self, rows, replace=replace)  # type: ignore[arg-type]
        if not hits:
            hits.append(1)
            raise KeyboardInterrupt

    monkeypatch.setattr(PackIndex, "add", add)
    return hits


def test_a_pack_indexed_just_before_an_interrupt_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalPackStore(tmp_path / "store")
    bodies = [f"object {i}\n".encode() * 50 for i in range(20)]
    digests = [hash_bytes(b) for b in bodies]
    for digest, body in zip(digests, bodies, strict=True):
        store.put(digest, body)
    hits = _interrupt_after_commit(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        store.sync()
    assert hits == [1]
    store.discard()  # what a log does on the way out
    store.close()
    again = LocalPackStore(tmp_path / "store")
    assert [again.get(d) for d in digests] == bodies  # indexed, and the pack is there
    packs = list((tmp_path / "store" / "packs").rglob("*.pack"))
    assert len(packs) == 1 and os.path.getsize(packs[0]) > 0
    again.close()


def test_a_log_interrupted_after_its_index_commit_leaves_a_store_the_next_log_uses(
    tmp_path: Path, cairn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    reset_backends()
    data = tmp_path / "data"
    data.mkdir()
    for i in range(200):
        (data / f"{i:03}.txt").write_bytes(f"row {i}\n".encode() * (i + 1))
    with cairn.init(project="p") as run:
        hits = _interrupt_after_commit(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            run.log_artifact(str(data), name="rows", type="dataset")
        assert hits == [1]
        monkeypatch.undo()
        monkeypatch.setenv("CAIRN_QUIET", "1")
        art = run.log_artifact(str(data), name="rows", type="dataset")
    out = art.download(tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted(os.listdir(data))
    assert (Path(out) / "199.txt").read_bytes() == b"row 199\n" * 200
    reset_backends()
