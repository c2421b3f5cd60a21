"""`cairn cache ...`: the local cache under CAIRN_DIR/cache (never the store).

``cache/objects`` holds the objects a client of a Cairn server downloaded, in packs with an
index (deletable: they are fetched again when a download needs them), kept under
``CAIRN_CACHE_MAX`` by evicting least recently used packs (`cairn.client.cache_limit`);
``cairn cache`` shows its size, its limit and the last evictions. ``cache/files`` holds
files reassembled for downloads by older layouts; ``cache/hashes.db`` remembers file digests by
(device, inode, size, mtime, ctime) so unchanged files are not read again. The embedded store
(CAIRN_DIR/store) is not a cache and is never touched here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, QuietOpt

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Show the download cache (size, limit, last evictions), or shrink it.",
)

_SHOWN_EVICTIONS = 10

_STALE_TMP_SECONDS = 3600


@dataclass
class CachedFile:
    path: Path
    size: int
    last_used: float  # the later of atime and mtime
    links: int
    pack: str | None = None  # a pack of the downloaded-objects cache (its index rows go too)


def cache_dir() -> Path:
    from cairn import config

    return config.cairn_dir() / "cache"


def files_dir() -> Path:
    return cache_dir() / "files"


def _walk(root: Path) -> list[CachedFile]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            found.append(CachedFile(path, st.st_size, max(st.st_atime, st.st_mtime), st.st_nlink))
    return found


def _objects(files_root: Path) -> list[CachedFile]:
    """The cached files proper (not writers' temp files)."""
    return _walk(files_root / "objects")


def objects_dir() -> Path:
    return cache_dir() / "objects"


def _packs() -> list[CachedFile]:
    """The packs of the downloaded-objects cache (a client of a server fills it)."""
    packs = []
    for f in _walk(objects_dir() / "packs"):
        if f.path.name.endswith(".pack"):
            f.pack = f.path.name
            packs.append(f)
    return packs


def _drop_packs(packs: list[CachedFile], limit: int) -> set[str]:
    """Evict the packs, as a download would (under the eviction lock, the index rows first,
    then the files), except those a download in progress still needs. Returns the packs
    deleted."""
    if not packs:
        return set()
    from cairn.client import cache_limit

    root = objects_dir()
    store = cache_limit.CachePackStore(root)
    gone: set[str] = set()
    try:
        with cache_limit.eviction_lock(root):
            before = cache_limit.cache_bytes(root)
            spared = cache_limit.pinned_by_others(root)
            now = time.time()
            for p in packs:
                if p.pack is None or p.pack in spared:
                    continue
                if store.evict_pack(p.pack):
                    gone.add(p.pack)
            freed = sum(p.size for p in packs if p.pack in gone)
            if gone:
                cache_limit.log_eviction(
                    root,
                    cache_limit.Eviction(
                        time=now,
                        packs=len(gone),
                        bytes=freed,
                        size_before=before,
                        size_after=before - freed,
                        limit=limit,
                        reason="clean",
                        pid=os.getpid(),
                    ),
                )
    finally:
        store.close()
    return gone


def _status() -> dict[str, object]:
    from cairn.client import cache_limit

    root = objects_dir()
    packs = cache_limit.pack_files(root)
    limit = cache_limit.limit_for(root)
    log = cache_limit.read_log(root)
    return {
        "path": str(root),
        "bytes": sum(size for size, _ in packs.values()),
        "packs": len(packs),
        "limit_bytes": limit,
        "limit": cache_limit.describe_limit(),
        "disk_bytes": cache_limit.disk_bytes(root),
        "evicted_bytes": sum(int(e.get("bytes", 0)) for e in log),
        "evictions": log[-_SHOWN_EVICTIONS:][::-1],
    }


@app.callback(invoke_without_command=True)
def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show the download cache: its size, its limit (CAIRN_CACHE_MAX) and the last
    evictions, newest first. `cairn cache info` counts every cache; `cairn cache clean`
    shrinks it now."""
    if ctx.invoked_subcommand is not None:
        return
    data = _status()
    if json_out:
        output.print_json(data)
        return
    limit = data["limit_bytes"]
    size = int(str(data["bytes"]))
    if isinstance(limit, int):
        used = size * 100 // limit if limit else 0
        shown = f"{output.human_size(limit)} ({used}% used)"
    else:
        shown = "none"
    output.print_key_values(
        [
            ("download cache", str(data["path"])),
            ("size", f"{output.human_size(size)} in {data['packs']} packs"),
            ("limit", f"{shown}; {data['limit']}"),
            ("evicted", f"{output.human_size(int(str(data['evicted_bytes'])))} in the log"),
        ]
    )
    evictions = data["evictions"]
    assert isinstance(evictions, list)
    if not evictions:
        output.echo("No evictions yet.")
        return
    output.echo("")
    t = output.table("time", "freed", "packs", "left", "why")
    for e in evictions:
        when = datetime.fromtimestamp(float(e["time"]), tz=UTC)
        output.add_row(
            t,
            output.when(when),
            output.human_size(int(e["bytes"])),
            str(e["packs"]),
            output.human_size(int(e["size_after"])),
            str(e["reason"]),
        )
    t.print()


@app.command("info")
def info(json_out: JsonOpt = False) -> None:
    """Show where the cache is and how much space it takes."""
    root = cache_dir()
    everything = _walk(root)
    files = _objects(files_dir()) + _packs()
    files_bytes = sum(f.size for f in files)
    total = sum(f.size for f in everything)
    data = {
        "path": str(root),
        "total_bytes": total,
        "files": {
            "path": str(objects_dir()),
            "count": len(files),
            "bytes": files_bytes,
            "linked_elsewhere": sum(1 for f in files if f.links > 1),
        },
        "other_bytes": total - files_bytes,
    }
    if json_out:
        output.print_json(data)
        return
    output.print_key_values(
        [
            ("cache", str(root)),
            ("total", output.human_size(total)),
            ("download cache", f"{output.human_size(files_bytes)} in {len(files)} files"),
            ("hash cache etc.", output.human_size(total - files_bytes)),
        ]
    )


@app.command("clean")
def clean(
    max_size: Annotated[
        int,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            parser=output.parse_size,
            help="Shrink the download cache to at most this size, e.g. 10GB, 500MB, 2GiB. "
            "0 empties it.",
        ),
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete cached download files, least recently used first (by access or modification
    time), until the download cache fits in --max-size.

    Only the download caches under CAIRN_DIR/cache are touched (the packs of objects fetched
    from a server, and reassembled files), never the embedded store (CAIRN_DIR/store): whatever
    is deleted is fetched or rebuilt again when a download needs it.
    """
    files = sorted(_objects(files_dir()) + _packs(), key=lambda f: f.last_used)
    total = sum(f.size for f in files)
    removed = 0
    freed = 0
    doomed_packs: list[CachedFile] = []
    for f in files:
        if total - freed <= max_size:
            break
        if f.pack:
            doomed_packs.append(f)
        elif not dry_run:
            f.path.unlink(missing_ok=True)
        removed += 1
        freed += f.size
    if not dry_run:
        gone = _drop_packs(doomed_packs, max_size)
        kept = [p for p in doomed_packs if p.pack not in gone]
        removed -= len(kept)
        freed -= sum(p.size for p in kept)
    now = time.time()
    stale = [t for t in _walk(files_dir() / "tmp") if now - t.last_used > _STALE_TMP_SECONDS]
    if not dry_run:
        for t in stale:
            t.path.unlink(missing_ok=True)
        _prune_empty_dirs(files_dir() / "objects")
    if output.quiet(quiet):
        return
    verb = "Would delete" if dry_run else "Deleted"
    output.echo(
        f"{verb} {removed} cached files ({output.human_size(freed)}); the download cache "
        f"{'would hold' if dry_run else 'now holds'} {output.human_size(total - freed)} "
        f"(limit {output.human_size(max_size)})."
    )
    if stale:
        output.echo(f"{verb} {len(stale)} stale temporary files.")


def _prune_empty_dirs(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if dirpath != str(root):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
