"""`cairn cache ...`: the local cache under CAIRN_DIR/cache (never the store).

``cache/objects`` holds the objects a client of a Cairn server downloaded, in packs with an
index (deletable: they are fetched again when a download needs them); ``cache/files`` holds
files reassembled for downloads by older layouts; ``cache/hashes.db`` remembers file digests by
(device, inode, size, mtime, ctime) so unchanged files are not read again. The embedded store
(CAIRN_DIR/store) is not a cache and is never touched here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, QuietOpt

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Show the size of the local cache, or shrink it.",
)

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


def _drop_packs(packs: list[CachedFile]) -> None:
    """Forget the packs' objects in the cache index first, then delete the files: a reader
    never finds an index row whose pack is gone."""
    if not packs:
        return
    from cairn.objects.packs.local import LocalPackStore

    db = LocalPackStore(objects_dir())
    try:
        db.drop_packs([p.pack for p in packs if p.pack])
    finally:
        db.close()
    for p in packs:
        p.path.unlink(missing_ok=True)


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
        _drop_packs(doomed_packs)
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
