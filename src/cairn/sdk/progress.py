"""Progress bars for long work, shown only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cairn import config

_MIN_BYTES = 64 << 20


def enabled() -> bool:
    return sys.stderr.isatty() and not config.quiet()


@contextmanager
def progress_bar(
    description: str, total_files: int, total_bytes: int
) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback ``advance(files, nbytes)``; draws bytes, files, rate and ETA."""
    if not enabled() or total_bytes < _MIN_BYTES:
        yield lambda files, nbytes: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total_bytes)
        done = [0]

        def advance(files: int, nbytes: int) -> None:
            done[0] += files
            bar.update(
                task, advance=nbytes, description=f"{description} {done[0]}/{total_files} files"
            )

        yield advance
