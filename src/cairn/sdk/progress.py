"""Progress bars for long work, shown only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cairn import config

_MIN_BYTES = 64 << 20
_MIN_FILES = 5000


def enabled() -> bool:
    return sys.stderr.isatty() and not config.quiet()


@contextmanager
def progress_bar(
    description: str, total_files: int, total_bytes: int | None
) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback ``advance(files, nbytes)``; draws bytes, files, rate and ETA. With
    ``total_bytes=None`` (not known ahead, e.g. a folder walked while it is logged) the bar
    counts files."""
    if total_bytes is None:
        if not enabled() or total_files < _MIN_FILES:
            yield lambda files, nbytes: None
            return
        with _files_bar(description, total_files) as advance:
            yield advance
        return
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


@contextmanager
def _files_bar(description: str, total_files: int) -> Iterator[Callable[[int, int], None]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total_files)

        def advance(files: int, nbytes: int) -> None:
            bar.update(task, advance=files)

        yield advance
