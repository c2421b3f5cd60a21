"""What runs on the workers: store one shard of files as a part, or write one shard of a
version's files. Plain module-level functions (the engines pickle them by name), each opening
the backend the driver's settings name."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cairn import config
from cairn.objects.ingest import StagedFile
from cairn.objects.materialize import Wanted
from cairn.objects.tree import Dir, FileEntry, Leaf, Ref, list_dir
from cairn.sdk.artifact import Artifact, artifact_at
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.log_version import Draft
from cairn.sdk.parts import store_part

_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")  # a bucket store's credentials and endpoint
_PASSED = ("CAIRN_STORE", "CAIRN_DIRECT_TRANSFERS", "CAIRN_RETRY_SECONDS")
_lock = threading.Lock()


def driver_settings() -> dict[str, str]:
    """The driver's Cairn settings, resolved (defaults and saved logins included), for the
    workers: the backend they open is the driver's."""
    env = {
        "CAIRN_DIR": str(config.cairn_dir()),
        "CAIRN_DATABASE_URL": config.database_url(),
        "CAIRN_QUIET": "1",
    }
    url = config.server_url()
    if url:
        env["CAIRN_URL"] = url
        key = config.api_key()
        if key:
            env["CAIRN_API_KEY"] = key
    else:
        env["CAIRN_OFFLINE"] = "1"
    for name, value in os.environ.items():
        if name in _PASSED or name.startswith(_PREFIXES):
            env[name] = value
    return env


def _backend(settings: Mapping[str, str] | None) -> Backend:
    """The backend ``settings`` name (None: this worker's own environment)."""
    if settings is None:
        return get_backend()
    with _lock:
        for name in [n for n in os.environ if n.startswith("CAIRN_") and n not in settings]:
            del os.environ[name]
        os.environ.update(settings)
        return get_backend()


def store_shard(
    settings: Mapping[str, str] | None,
    project: str,
    name: str,
    type: str,
    distributed_id: str,
    part: str,
    items: list[tuple[str, str]],
    run_id: str | None,
) -> dict[str, Any]:
    """Hash and store the files of one shard (``items``: (source, path in the version); a
    source with ``://`` is a reference) and upsert them as part ``part``."""
    started = time.monotonic()
    backend = _backend(settings)
    entries: list[StagedFile | FileEntry] = []
    refs = Artifact(name, type)
    for source, path in items:
        if "://" in source:
            refs.add_reference(source, name=path)
        else:
            entries.append(StagedFile(path, source))
    if refs._entries:
        entries.extend(refs._entries.values())
    draft = Draft(name=name, type=type, description="", metadata=None, aliases=[], tags=[])
    draft.entries = entries
    stored = store_part(
        backend, project, draft, distributed_id=distributed_id, part=part, run_id=run_id
    )
    return {
        "part": stored.info.to_dict(),
        "files": len(items),
        "bytes": stored.info.size,
        "new_bytes": stored.stats.new_bytes,
        "stats": {k: v for k, v in vars(stored.stats).items() if not k.startswith("_")},
        "seconds": time.monotonic() - started,
    }


def files_in_range(
    root: str, load: Callable[[str], bytes], first: str, last: str
) -> Iterator[tuple[str, Leaf]]:
    """(path, file) of every file of the tree whose path sorts from ``first`` to ``last``,
    reading only the folders that can hold one (in no particular order)."""
    stack = [("", root)]
    while stack:
        prefix, digest = stack.pop()
        for entry in list_dir(digest, load):
            path = prefix + entry.name
            if isinstance(entry, Dir):
                below = path + "/"  # every path inside sorts right after this, before others
                if last < below or (first > below and not first.startswith(below)):
                    continue
                stack.append((below, entry.digest))
            elif first <= path <= last:
                yield path, entry


def download_shard(
    settings: Mapping[str, str] | None,
    version_id: int,
    root: str,
    first: str,
    last: str,
    overwrite: bool,
) -> int:
    """Write the files of the version whose paths sort from ``first`` to ``last`` (inclusive)
    into ``root``; returns how many."""
    backend = _backend(settings)
    art = artifact_at(backend.registry.get_version(version_id), backend)
    wanted: list[Wanted] = []
    refs: list[tuple[str, Ref]] = []
    for path, entry in files_in_range(art.digest, art._load, first, last):
        if isinstance(entry, Ref):
            refs.append((path, entry))
        else:
            wanted.append(Wanted(path, entry.digest, entry.size, entry.chunks))
    dest = Path(root)
    art._materialize(wanted, dest, overwrite)
    art._fetch_references(refs, dest, False, overwrite)
    return len(wanted) + len(refs)


__all__ = ["download_shard", "driver_settings", "store_shard"]
