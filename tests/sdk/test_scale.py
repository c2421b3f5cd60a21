"""A hundred thousand files, on every SDK mode (embedded on SQLite and PostgreSQL, and through a
server): half of them in one flat folder (its tree cut into pages), half in folders of a
thousand. The results are checked, not the times (those are in bench/scale.py): the version
holds every file, an unchanged re-log is the same version and stores nothing, a change makes a
version that differs by exactly that change, a download is byte for byte the data and a second
one rewrites nothing; a log interrupted by Ctrl-C, or by a file that grows while it is read,
leaves no version and what it stored is reused by the next."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_helpers import snapshot, tree_of, versions
from typer.testing import CliRunner

import cairn
from cairn.cli.main import app
from cairn.errors import CairnError, FileChangedError
from cairn.objects import ingest

FLAT = 50_000
FOLDERS = 50
PER_FOLDER = 1_000
N = FLAT + FOLDERS * PER_FOLDER
AGED = 600 * 10**9  # files written ten minutes ago: the hash cache may remember them


def _content(rnd: random.Random, i: int) -> bytes:
    return b"%d\n" % i + rnd.randbytes(rnd.randrange(8, 64))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data, written once for the module (the tests put back whatever they change)."""
    root = tmp_path_factory.mktemp("scale") / "data"
    rnd = random.Random(12)
    (root / "flat").mkdir(parents=True)
    for i in range(FLAT):
        (root / "flat" / f"img_{i:06d}.bin").write_bytes(_content(rnd, i))
    for f in range(FOLDERS):
        folder = root / "nested" / f"shard-{f:03d}"
        folder.mkdir(parents=True)
        for j in range(PER_FOLDER):
            (folder / f"{j:04d}.bin").write_bytes(_content(rnd, FLAT + f * PER_FOLDER + j))
    old = (os.stat(root).st_mtime_ns - AGED,) * 2
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), ns=old)
    return root


@pytest.fixture
def data(big: Path) -> Iterator[Path]:
    """The module's data; files a test edits, adds or removes are put back after it."""
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in _touched(big)}
    yield big
    for path in _added(big):
        path.unlink(missing_ok=True)
    for path, (content, mtime) in before.items():
        path.write_bytes(content)
        os.utime(path, ns=(mtime, mtime))


def _touched(root: Path) -> list[Path]:
    return [
        root / "flat" / "img_031337.bin",
        root / "nested" / "shard-017" / "0420.bin",
        root / "nested" / "shard-040" / "0500.bin",
    ]


def _added(root: Path) -> list[Path]:
    return [root / "nested" / "shard-049" / "new.bin"]


def _log(root: Path, name: str = "many") -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset")
    art.add_dir(root)
    with cairn.init(project="proj", job_type="ingest") as run:
        run.log_artifact(art)
    return art


def _placed(root: Path) -> dict[str, tuple[int, int]]:
    """{path: (inode, mtime)} of every file below root: what a rewrite would change."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_ino, st.st_mtime_ns)
    return out


def test_a_hundred_thousand_files_log_relog_change_diff_and_download(
    data: Path, tmp_path: Path, backend_mode: str
) -> None:
    first = _log(data)
    assert (first.version, first.file_count, first.stats.files) == ("v0", N, N)
    assert first.stats.hashed_files == N
    assert first.size == sum(p.stat().st_size for p in data.rglob("*.bin"))
    assert len(first.files("flat")) == FLAT  # the flat folder's pages read back whole
    assert len(first.files("nested/shard-017")) == PER_FOLDER

    stored = snapshot()
    again = _log(data)
    assert (again.version, again.digest) == ("v0", first.digest)  # no new version
    assert again.stats.hashed_files == 0
    assert again.stats.new_objects == 0
    assert snapshot() == stored  # nothing stored

    flat_file, nested_file, _ = _touched(data)
    originals = {f"flat/{flat_file.name}": flat_file.read_bytes()}
    originals[f"nested/shard-017/{nested_file.name}"] = nested_file.read_bytes()
    flat_file.write_bytes(b"relabelled\n")
    nested_file.write_bytes(nested_file.read_bytes()[::-1] + b"!")
    _added(data)[0].write_bytes(b"a new sample\n")
    changed = _log(data)
    assert changed.version == "v1" and changed.file_count == N + 1
    assert changed.stats.hashed_files == 3  # only what changed is read
    assert changed.stats.new_objects < 30  # three blobs and the trees above them

    result = CliRunner().invoke(app, ["artifact", "diff", "proj/many:v0", "proj/many:v1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["counts"] == {"added": 1, "removed": 0, "modified": 2}
    assert {(r["path"], r["change"]) for r in report["files"]} == {
        ("flat/img_031337.bin", "modified"),
        ("nested/shard-017/0420.bin", "modified"),
        ("nested/shard-049/new.bin", "added"),
    }

    out = tmp_path / "out"
    assert changed.download(root=out) == str(out)
    v1_files = tree_of(data)
    assert tree_of(out) == v1_files
    placed = _placed(out)
    changed.download(root=out)  # again: every file is in place, none is rewritten
    assert _placed(out) == placed

    old = cairn.Api().artifact("proj/many:v0")
    old.download(root=out, overwrite=True)  # back to v0: only the two changed files move
    after = _placed(out)
    assert set(after) == set(placed)  # the file v0 lacks is the user's to remove
    assert {p for p in after if after[p] != placed[p]} == set(originals)
    assert tree_of(out) == {**v1_files, **originals}


@pytest.mark.parametrize("backend_mode", ["sqlite"])  # 400 files on every mode: test_streamed_log
def test_ctrl_c_and_a_growing_file_during_a_big_log_lose_nothing(
    data: Path, monkeypatch: pytest.MonkeyPatch, backend_mode: str
) -> None:
    real = ingest.Ingestor.hash_batch
    calls: list[int] = []
    # past the files the interrupted log read (the flat folder, its first batch); a file the
    # hash cache remembers from that log is not read again, so its growth would go unseen
    grown = _touched(data)[2]

    def interrupted(self: ingest.Ingestor, staged: list[ingest.StagedFile]) -> object:
        calls.append(len(staged))
        if sum(calls) > N // 2:
            raise KeyboardInterrupt  # Ctrl-C once half the files were read
        return real(self, staged)

    art = cairn.Artifact("many", type="dataset")
    art.add_dir(data)
    with cairn.init(project="proj") as run:
        with monkeypatch.context() as mp:
            mp.setattr(ingest.Ingestor, "hash_batch", interrupted)
            with pytest.raises(KeyboardInterrupt):
                run.log_artifact(art)
        assert art.is_draft and versions() == set()
        hashed_before = sum(calls[:-1])
        assert hashed_before >= N // 4

        def growing(self: ingest.Ingestor, staged: list[ingest.StagedFile]) -> object:
            if any(s.source == str(grown) for s in staged):
                with open(grown, "ab") as f:
                    f.write(b"appended while the log read it\n")
            return real(self, staged)

        with monkeypatch.context() as mp:
            mp.setattr(ingest.Ingestor, "hash_batch", growing)
            with pytest.raises(FileChangedError) as info:
                run.log_artifact(art)
        assert str(grown) in str(info.value)
        assert art.is_draft and versions() == set()

        grown.write_bytes(grown.read_bytes().split(b"appended")[0])
        os.utime(grown, ns=(os.stat(data).st_mtime_ns - AGED,) * 2)
        with pytest.raises(FileChangedError):  # the draft saw it before it was put back
            run.log_artifact(art)
        art = cairn.Artifact("many", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    assert [v.rsplit("/", 1)[-1] for v in versions()] == ["many:v0"]
    assert art.file_count == N
    # the files the interrupted logs read and stored are not read again
    assert art.stats.hashed_files <= N - hashed_before
    out = Path("out")
    art.download(root=out)
    assert tree_of(out) == tree_of(data)
    shutil.rmtree(out)


@pytest.mark.parametrize("how", ["grows", "disappears"])
def test_a_file_that_changes_between_the_walk_and_its_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, backend_mode: str
) -> None:
    """The walk stats a folder's files a batch ahead of reading them: a file written or
    removed in between is refused by name, and no version is made."""
    root = tmp_path / "data"
    for f in range(4):
        (root / f"d{f}").mkdir(parents=True)
        for i in range(50):
            (root / f"d{f}" / f"{i}.txt").write_bytes(b"%d %d\n" % (f, i))
    victim = root / "d2" / "7.txt"
    real = ingest.Ingestor.hash_batch

    def meddling(self: ingest.Ingestor, staged: list[ingest.StagedFile]) -> object:
        if any(s.source == str(victim) for s in staged) and victim.exists():
            if how == "grows":
                with open(victim, "ab") as f:
                    f.write(b"more\n")
            else:
                victim.unlink()
        return real(self, staged)

    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(root)
    monkeypatch.setattr(ingest.Ingestor, "hash_batch", meddling)
    with cairn.init(project="proj") as run, pytest.raises(CairnError) as info:
        run.log_artifact(art)
    assert str(victim) in str(info.value)
    assert ("changed while" if how == "grows" else "does not exist") in str(info.value)
    assert art.is_draft and versions() == set()
