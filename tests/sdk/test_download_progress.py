"""The download progress bar moves as a large file's bytes land, not once it is complete."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import cairn
import cairn.sdk.artifact as artifact_module


def test_a_large_files_bytes_are_reported_as_they_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom(12 << 20)  # chunked: ~24 chunks of 512 KiB on average
    (src / "model.bin").write_bytes(big)
    (src / "small.txt").write_text("tiny\n")
    with cairn.init(project="p", job_type="t") as run:
        art = cairn.Artifact("model", type="model")
        art.add_dir(src)
        run.log_artifact(art)

    calls: list[tuple[int, int]] = []
    totals: list[tuple[int, int]] = []

    @contextmanager
    def recording_bar(
        description: str, total_files: int, total_bytes: int
    ) -> Iterator[Callable[[int, int], None]]:
        totals.append((total_files, total_bytes))
        yield lambda files, nbytes: calls.append((files, nbytes))

    monkeypatch.setattr(artifact_module, "progress_bar", recording_bar)
    out = Path(cairn.Api("p").artifact("model:latest").download(tmp_path / "out"))
    assert (out / "model.bin").read_bytes() == big
    assert totals == [(2, len(big) + 5)]
    assert sum(f for f, _ in calls) == 2  # each file counted once
    assert sum(n for _, n in calls) == len(big) + 5  # every byte counted once
    partial = [n for f, n in calls if f == 0 and n > 0]
    assert len(partial) >= 4  # the big file's bytes arrived in several steps
    assert max(partial) < len(big) // 2
