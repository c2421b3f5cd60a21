"""Several processes writing one database at once, on SQLite and PostgreSQL.

Each worker is a separate process with its own engine, like separate training scripts or
server replicas. They are forked from a 'forkserver' that has already imported Cairn, because
starting a fresh interpreter and importing SQLAlchemy takes seconds on a small machine.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from multiprocessing.synchronize import Barrier
from typing import Any

from cairn.core.digest import hash_bytes
from cairn.service.sql import SqlRegistry

WORKERS = 4
COMMITS = 5
TIMEOUT = 120


def _digest(seed: str) -> str:
    return hash_bytes(seed.encode())


def _commit_many(url: str, worker: int, barrier: Barrier, errors: Any) -> None:
    try:
        barrier.wait(TIMEOUT)  # open the (possibly fresh) database at the same moment
        registry = SqlRegistry(url)
        barrier.wait(TIMEOUT)  # and create the project and artifact at the same moment
        run = registry.create_run("race", job_type="writer")
        for i in range(COMMITS):
            registry.commit_version(
                "race",
                "shared",
                "dataset",
                digest=_digest(f"{worker}-{i}"),
                size=i,
                file_count=1,
                aliases=["hot", f"w{worker}"],
                run_id=run.id,
            )
        registry.update_run(run.id, state="finished")
        registry.close()
    except BaseException:
        barrier.abort()  # release the others instead of letting them wait
        errors.put(f"worker {worker}:\n{traceback.format_exc()}")
        raise


def _commit_same(url: str, worker: int, barrier: Barrier, errors: Any) -> None:
    try:
        registry = SqlRegistry(url)
        barrier.wait(TIMEOUT)
        _, created = registry.commit_version(
            "race", "same", "model", digest=_digest("same"), size=1, file_count=1
        )
        errors.put(f"created={created}")
        registry.close()
    except BaseException:
        barrier.abort()  # release the others instead of letting them wait
        errors.put(f"worker {worker}:\n{traceback.format_exc()}")
        raise


_PRELOAD = [
    "cairn.service.sql",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
    "alembic.command",
]


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*_PRELOAD, __name__])
    return ctx


def _run_workers(target: Any, url: str) -> list[str]:
    ctx = _context()
    barrier = ctx.Barrier(WORKERS)
    messages = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, w, barrier, messages)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT)
    out = []
    while True:
        try:
            out.append(messages.get(timeout=0.5))
        except queue.Empty:
            break
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * WORKERS, "\n".join(out)
    return out


def test_concurrent_commits_get_gap_free_unique_numbers(database_url: str) -> None:
    """Fresh database: the schema, the project, the artifact and the versions are all
    created by racing processes."""
    messages = _run_workers(_commit_many, database_url)
    assert not [m for m in messages if "Traceback" in m]

    with SqlRegistry(database_url) as registry:
        versions = registry.list_versions("race", "shared")
        assert sorted(v.version for v in versions) == list(range(WORKERS * COMMITS))
        expected = {_digest(f"{w}-{i}") for w in range(WORKERS) for i in range(COMMITS)}
        assert {v.digest for v in versions} == expected
        by_digest = {v.digest: v for v in versions}
        # each worker's alias is on its own last commit; 'hot' is on exactly one version
        for w in range(WORKERS):
            assert f"w{w}" in by_digest[_digest(f"{w}-{COMMITS - 1}")].aliases
        assert sum("hot" in v.aliases for v in versions) == 1
        assert versions[0].aliases[0] == "latest" and versions[0].version == 19
        runs = registry.list_runs("race")
        assert len(runs) == WORKERS and len({r.name for r in runs}) == WORKERS
        assert all(len(registry.run_outputs(r.id)) == COMMITS for r in runs)
        assert [p.name for p in registry.list_projects()] == ["race"]


def test_concurrent_commits_of_the_same_digest_make_one_version(database_url: str) -> None:
    SqlRegistry(database_url).close()  # schema first; this test is about the commit
    messages = _run_workers(_commit_same, database_url)
    assert sorted(messages) == ["created=False"] * (WORKERS - 1) + ["created=True"]
    with SqlRegistry(database_url) as registry:
        [only] = registry.list_versions("race", "same")
        assert only.version == 0


def test_threads_sharing_one_registry(database_url: str) -> None:
    """One registry object used from several threads (as the server does)."""
    from concurrent.futures import ThreadPoolExecutor

    with SqlRegistry(database_url) as registry:

        def work(i: int) -> int:
            info, _ = registry.commit_version(
                "proj", "ds", "dataset", digest=_digest(str(i)), size=1, file_count=1
            )
            return info.version

        with ThreadPoolExecutor(8) as pool:
            numbers = sorted(pool.map(work, range(24)))
        assert numbers == list(range(24))
