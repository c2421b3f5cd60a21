"""Log a folder (or a list of files and URIs) as one version with many workers, and download a
version with many workers, on the engine the job already runs on: **Dask** or **Ray**, or on
this machine's cores (``engine="processes"``: the standard library's process pool). Cairn
brings no scheduler of its own.

```python
from dask.distributed import Client
import cairn, cairn.distributed

client = Client("scheduler:8786")           # or ray.init(...) and engine="ray"
with cairn.init(project="vision") as run:
    art = cairn.distributed.log_dir(run, "/data/images", "images", client=client)
    cairn.distributed.download(art, "/scratch/images", client=client)
```

How a log goes (`log_files`, `log_dir`):

1. The driver lists the files (a folder is walked once, in path order) and cuts the sorted
   list into contiguous shards, so that most folders fall inside one shard.
2. Each shard is one task (Dask future or Ray task): the worker hashes its files and stores
   their missing objects straight into the store (a shared folder, a bucket, or a server —
   on signed URLs when it offers them), then upserts its part (`Run.upsert_artifact`'s path,
   part id = the shard's number). A task retried by the engine sends the same part again:
   harmless. It returns the part (root, size, file count).
3. The driver shows a progress bar (files stored) while tasks finish, then finishes the
   version (`Run.finish_artifact` with every shard expected): the parts' trees are merged (no
   file bytes move) and the version committed, in the driver's run.

Workers reach the store the driver uses: the driver's Cairn settings (``CAIRN_DIR``, the
database, the store or server and its API key, and the store's credentials from ``AWS_*``,
``GOOGLE_*``, ``AZURE_*``) travel with each task, so workers need no setup. On other machines
``CAIRN_DIR`` (embedded mode) must be a shared folder at the same path; through a server only
the server must be reachable. ``settings="worker"`` uses the workers' own environment instead.

A download (`download`) lists the version's files on the driver, cuts them the same way, and
each worker writes its shard into ``root`` (a shared folder, or the same path on every machine).
"""

from __future__ import annotations

from cairn.distributed.driver import download, log_dir, log_files, shard
from cairn.distributed.engines import (
    Engine,
    dask_engine,
    pick_engine,
    processes_engine,
    ray_engine,
)

__all__ = [
    "Engine",
    "dask_engine",
    "download",
    "log_dir",
    "log_files",
    "pick_engine",
    "processes_engine",
    "ray_engine",
    "shard",
]
