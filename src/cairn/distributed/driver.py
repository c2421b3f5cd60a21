"""The driver's side of a distributed log or download (see `cairn.distributed`)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cairn.distributed.engines import Engine, pick_engine, window
from cairn.distributed.tasks import download_shard, driver_settings, store_shard
from cairn.errors import InvalidInputError, RunFinishedError, SourceFileError
from cairn.sdk.artifact import Artifact, logged_info
from cairn.sdk.progress import enabled as progress_enabled
from cairn.sdk.run import Run, current_run
from cairn.sdk.walk import FolderSource, walk_files

SHARDS_PER_WORKER = 4  # more shards than workers: a slow shard does not hold the others up
# A worker holds its shard's file records while it stores them, and the driver holds the file
# lists of the shards submitted and unfinished (`engines.window`): shards are cut smaller than
# SHARDS_PER_WORKER would make them when either would pass these bounds.
SHARD_FILES = 50_000
IN_FLIGHT_FILES = 400_000
Item = str | os.PathLike[str] | tuple[str | os.PathLike[str], str]


def shard(items: Sequence[Any], count: int) -> list[list[Any]]:
    """``items`` (already in order) cut into ``count`` contiguous runs of nearly equal length
    (fewer when there are fewer items); contiguous runs of sorted paths keep most folders in
    one shard, which keeps the merge small."""
    return list(_cut(items, len(items), max(1, min(count, len(items)))))


def shard_count(total: int, count: int, workers: int, *, capped: bool = True) -> int:
    """How many shards ``total`` files are cut into: ``count`` (the user's, or four per
    worker), or more with ``capped`` so that no shard holds more than SHARD_FILES files, nor
    more than IN_FLIGHT_FILES spread over the shards in flight (not below 1,000 files a shard:
    past 200 workers that bound gives way)."""
    if total <= 0:
        return 0
    count = max(1, min(count, total))
    if capped:
        most = min(SHARD_FILES, max(1_000, IN_FLIGHT_FILES // window(workers)))
        count = max(count, -(-total // most))
    return count


def _cut(items: Iterable[Any], total: int, count: int) -> Iterator[list[Any]]:
    """``items`` cut into ``count`` contiguous runs of nearly equal length (as `shard`), made
    one at a time as the engine asks for them. ``total`` is how many were counted: items
    beyond it (files that appeared since) go in more runs of the same length."""
    it = iter(items)
    size, extra = divmod(total, count) if count else (0, 0)
    for i in range(count):
        piece = list(itertools.islice(it, size + (1 if i < extra else 0)))
        if not piece:
            return
        yield piece
    while piece := list(itertools.islice(it, max(1, size + (1 if extra else 0)))):
        yield piece


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar of files done on the driver (on a terminal, unless CAIRN_QUIET)."""
    if not progress_enabled():
        yield lambda n: None
        return
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
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)


def _run(run: Run | None) -> Run:
    found = run if run is not None else current_run()
    if found is None:
        raise RunFinishedError("no active run: call cairn.init() first, or pass run=...")
    return found


def _items(files: Sequence[Item], root: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    """(source, path in the version) of each item, sorted by path."""
    base = None if root is None else os.path.abspath(os.fspath(root))
    out: list[tuple[str, str]] = []
    for item in files:
        if isinstance(item, tuple):
            source, path = os.fspath(item[0]), item[1]
        else:
            source = os.fspath(item)
            if "://" in source:
                path = source.rstrip("/").rsplit("/", 1)[-1]
            elif base is not None:
                path = os.path.relpath(os.path.abspath(source), base).replace(os.sep, "/")
                if path.startswith("../"):
                    raise InvalidInputError(f"{source} is not below root {base}")
            else:
                path = os.path.basename(source)
        if "://" not in source:
            source = os.path.abspath(source)
        out.append((source, path))
    out.sort(key=lambda sp: sp[1])
    return out


def log_files(
    files: Sequence[Item],
    name: str,
    type: str = "dataset",
    *,
    root: str | os.PathLike[str] | None = None,
    run: Run | None = None,
    client: Any = None,
    engine: str | Engine | None = None,
    shards: int | None = None,
    distributed_id: str | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    settings: str = "driver",
) -> Artifact:
    """Log files as one version of ``name``, hashed and stored by the cluster's workers.

    ``files``: paths (at their path relative to ``root``, else their file name), URIs
    (``s3://…``, logged as references, at their last segment), or (source, path) pairs.
    ``client``: a Dask client (default: the current one), or ``engine="ray"`` for the Ray
    cluster this process is connected to, or ``engine="processes"`` (or
    `processes_engine(n)`) for worker processes on this machine. ``shards``: how many tasks
    (default four per worker thread or CPU). The version is the output of ``run`` (default:
    the current run). ``settings="worker"``: workers use their own Cairn environment instead
    of the driver's."""
    items = _items(files, root)
    return _log(
        iter(items),
        len(items),
        name,
        type,
        run=run,
        client=client,
        engine=engine,
        shards=shards,
        distributed_id=distributed_id,
        description=description,
        metadata=metadata,
        aliases=aliases,
        tags=tags,
        settings=settings,
    )


def _log(
    items: Iterator[tuple[str, str]],
    total: int,
    name: str,
    type: str,
    *,
    run: Run | None = None,
    client: Any = None,
    engine: str | Engine | None = None,
    shards: int | None = None,
    distributed_id: str | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    settings: str = "driver",
) -> Artifact:
    """`log_files` of ``total`` (source, path) items, cut into shards as the engine asks for
    them: the driver holds the file lists of the unfinished shards only."""
    the_run = _run(run)
    if settings not in ("driver", "worker"):
        raise InvalidInputError("settings is 'driver' or 'worker'")
    on = pick_engine(client, engine)
    workers = on.workers()
    count = shards if shards is not None else workers * SHARDS_PER_WORKER
    count = shard_count(total, count, workers, capped=shards is None)
    did = distributed_id or f"{the_run.id}-{uuid.uuid4().hex[:12]}"
    env = driver_settings() if settings == "driver" else None
    parts: list[str] = []

    def calls() -> Iterator[tuple[Any, ...]]:
        for i, piece in enumerate(_cut(items, total, count)):
            parts.append(str(i))
            yield (env, the_run.project, name, type, did, str(i), piece, the_run.id)

    stored: Counter[str] = Counter()
    with _progress(f"logging {name} on {on.name}", total) as advance:
        for _i, result in on.map(store_shard, calls()):
            advance(int(result["files"]))
            stored.update(result.get("stats", {}))
    art = Artifact(name, type, description=description, metadata=metadata)
    done = the_run.finish_artifact(
        art,
        distributed_id=did,
        aliases=aliases,
        tags=tags,
        expected_parts=parts,
    )
    if getattr(done, "stats", None) is not None:  # the workers' counts join the driver's
        done.stats.add(**stored)
    return done


def log_dir(
    path: str | os.PathLike[str],
    name: str | None = None,
    type: str = "dataset",
    **options: Any,
) -> Artifact:
    """Log every file below a folder (``name`` defaults to the folder's name) as one version,
    with the cluster's workers; the options are `log_files`'. The same folder logged by one
    process (``run.log_artifact(path)``) gives the same version (same digest)."""
    folder = os.path.abspath(os.fspath(path))
    if not os.path.isdir(folder):
        raise SourceFileError(f"{folder} is not a folder")
    # counted first (names only, every problem raised before a task runs), then walked again
    # as the shards are cut: the driver never holds the whole listing
    total = FolderSource("", folder, 0).counted().files
    items = ((source, rel) for rel, source in walk_files(Path(folder)))
    return _log(items, total, name or os.path.basename(folder), type, **options)


def download(
    artifact: Artifact,
    root: str | os.PathLike[str],
    *,
    client: Any = None,
    engine: str | Engine | None = None,
    shards: int | None = None,
    overwrite: bool = False,
    settings: str = "driver",
) -> str:
    """Write a logged version's files into ``root`` (shared by the workers, or the same path
    on each machine) with the cluster's workers, each its shard of the files; returns the
    absolute path."""
    info = logged_info(artifact)
    dest = Path(root).expanduser().absolute()
    dest.mkdir(parents=True, exist_ok=True)
    on = pick_engine(client, engine)
    workers = on.workers()
    count = shards if shards is not None else workers * SHARDS_PER_WORKER
    # only the first and last path of each shard travel; the listing is read as shards are cut
    count = shard_count(info.file_count, count, workers, capped=shards is None)
    paths = (f.path for f in artifact.iter_files())
    env = driver_settings() if settings == "driver" else None
    calls = (
        (env, info.id, str(dest), piece[0], piece[-1], overwrite)
        for piece in _cut(paths, info.file_count, count)
    )
    with _progress(f"downloading {info.name} on {on.name}", info.file_count) as advance:
        for _i, done in on.map(download_shard, calls):
            advance(int(done))
    return str(dest)


__all__ = ["download", "log_dir", "log_files", "shard"]
