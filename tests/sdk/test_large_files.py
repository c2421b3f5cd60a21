"""Large files are stored as content-defined chunks: an edit in the middle stores little."""

from __future__ import annotations

import os
import random
from pathlib import Path

from sdk_helpers import object_lengths, store_bytes

import cairn
from cairn.core.digest import hash_bytes

MIB = 1 << 20


def _log(path: Path) -> cairn.Artifact:
    with cairn.init(project="proj") as run:
        return run.log_artifact(path, name="checkpoint", type="model")


def test_an_edit_in_the_middle_of_a_large_file_stores_only_nearby_chunks(tmp_path: Path) -> None:
    original = random.Random(40).randbytes(40 * MIB)
    path = tmp_path / "model.ckpt"
    path.write_bytes(original)

    v0 = _log(path)
    lengths = object_lengths()
    # cut into content-defined chunks of at most 2 MiB, not stored as one 40 MiB object
    assert max(lengths.values()) <= 2 * MIB
    assert len(lengths) >= 20 + 2  # chunks, the chunk list, the tree
    assert sum(lengths.values()) < 40 * MIB + 64 * 1024
    assert v0.size == 40 * MIB
    assert v0.files()[0].digest == hash_bytes(original)

    patch = random.Random(41).randbytes(MIB)
    with open(path, "r+b") as f:
        f.seek(20 * MIB)
        f.write(patch)
    edited = original[: 20 * MIB] + patch + original[21 * MIB :]
    before = store_bytes()
    v1 = _log(path)
    assert v1.version == "v1"
    assert v1.digest != v0.digest
    assert store_bytes() - before < 4 * MIB

    assert Path(v1.file(root=tmp_path / "dl1")).read_bytes() == edited
    assert Path(v0.file(root=tmp_path / "dl0")).read_bytes() == original
    v1.verify(tmp_path / "dl1")
    v0.verify(tmp_path / "dl0")


def test_large_and_small_files_together_round_trip(tmp_path: Path) -> None:
    rng = random.Random(7)
    folder = tmp_path / "mixed"
    files = {
        "big/a.bin": rng.randbytes(6 * MIB),
        "big/b.bin": rng.randbytes(4 * MIB),  # exactly at the chunking threshold
        "small.txt": b"tiny",
        "empty.txt": b"",
    }
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    with cairn.init(project="proj") as run:
        art = run.log_artifact(folder, name="mixed")
    root = Path(art.download(root=tmp_path / "dl"))
    for rel, content in files.items():
        assert (root / rel).read_bytes() == content, rel
    assert sorted(os.listdir(root)) == ["big", "empty.txt", "small.txt"]
    art.verify(root)
