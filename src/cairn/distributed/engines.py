"""The engines a distributed log or download runs its tasks on: a Dask client's futures, Ray
tasks, or worker processes on this machine (the standard library's `ProcessPoolExecutor`).
Each runs a stream of calls of one function and yields their results as they finish,
with at most `window` calls submitted and unfinished at a time (the caller makes the next call
only when one is wanted, so the driver's memory does not grow with the number of files); the
engine's own retries re-run a failed task (parts are idempotent)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from cairn.errors import InvalidInputError, MissingDependencyError, MissingPartsError

RETRIES = 2  # times the engine runs a failed task again


class Engine(Protocol):
    name: str

    def workers(self) -> int:
        """How many tasks the cluster runs at once (to size the shards)."""
        ...

    def map(
        self, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(*call)`` for every call on the cluster, taking the next call from
        ``calls`` only when fewer than `window` are unfinished; yield (index of the call,
        result) as each finishes. A task that fails after its retries raises here."""
        ...


def window(workers: int) -> int:
    """How many tasks are submitted and unfinished at a time: two per worker, so that each
    has its next task queued when it finishes one."""
    return max(2, 2 * workers)


class DaskEngine:
    """Futures on a `dask.distributed.Client`."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    def workers(self) -> int:
        info = self.client.scheduler_info()
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        return max(1, threads)

    def map(
        self, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        import dask

        import distributed

        tag = uuid.uuid4().hex[:12]
        numbered = enumerate(calls)
        unfinished: dict[str, tuple[int, Any]] = {}
        as_completed: Any = distributed.as_completed
        done = as_completed(loop=self.client.loop)  # this client's, not the default one
        most = window(self.workers())

        def top_up() -> None:
            # a shard's file list travels inside its task, so that the scheduler can run the
            # task again elsewhere when a worker dies (data scattered to a worker would die
            # with it): Dask's warning about large graphs does not apply
            with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GiB"}):
                for i, call in itertools.islice(numbered, max(0, most - len(unfinished))):
                    future = self.client.submit(
                        fn, *call, key=f"cairn-{tag}-{i}", pure=False, retries=RETRIES
                    )
                    unfinished[future.key] = (i, future)
                    done.add(future)

        try:
            top_up()  # the calls may fail as they are made: what was submitted is cancelled
            while unfinished:
                future = next(done)
                i, _ = unfinished.pop(future.key)
                result = future.result()
                top_up()
                yield i, result
        finally:
            self.client.cancel([f for _, f in unfinished.values()])


class RayEngine:
    """Tasks on the Ray cluster this process is connected to (``ray.init()``)."""

    name = "ray"

    def workers(self) -> int:
        import ray

        resources: Any = ray.cluster_resources
        return max(1, int(resources().get("CPU", 1)))

    def map(
        self, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        import ray

        remote = ray.remote(fn).options(max_retries=RETRIES, retry_exceptions=True)
        numbered = enumerate(calls)
        unfinished: dict[Any, int] = {}
        most = window(self.workers())

        def top_up() -> None:
            for i, call in itertools.islice(numbered, max(0, most - len(unfinished))):
                unfinished[remote.remote(*call)] = i

        try:
            top_up()  # the calls may fail as they are made: what was submitted is cancelled
            while unfinished:
                ready, _ = ray.wait(list(unfinished), num_returns=1)
                for ref in ready:
                    i = unfinished.pop(ref)
                    result = ray.get(ref)
                    top_up()
                    yield i, result
        finally:
            for ref in unfinished:
                ray.cancel(ref)


class _Cancelled(Exception):
    """A task of a stopped map that started after the stop: it did nothing."""


_stopped: Any = None  # in each worker process: the map's stop flag (a multiprocessing Event)


def _watch(stopped: Any) -> None:
    global _stopped
    _stopped = stopped


def _guarded(fn: Callable[..., Any], call: tuple[Any, ...]) -> Any:
    if _stopped is not None and _stopped.is_set():
        raise _Cancelled
    return fn(*call)


class ProcessEngine:
    """Worker processes on this machine, for one machine's cores: a log of a big folder in one
    Python process is bound by its per-file work on one core. Workers are started fresh
    (``spawn``: nothing of the caller's threads or open connections is copied into them), so a
    script that calls this at its top level needs the usual ``if __name__ == "__main__":``
    guard, as for any `multiprocessing` pool. A task that fails is not retried."""

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise InvalidInputError(f"workers must be 1 or more, not {workers}")
        self._workers = workers or available_cores()

    def workers(self) -> int:
        return self._workers

    def map(
        self, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context("spawn")
        # the pool hands a few calls to its processes ahead of time, where they can no longer
        # be cancelled: after a stop, a call that starts does nothing
        stopped = context.Event()
        pool = ProcessPoolExecutor(
            self._workers, mp_context=context, initializer=_watch, initargs=(stopped,)
        )
        numbered = enumerate(calls)
        unfinished: dict[Future[Any], int] = {}
        most = window(self._workers)

        def top_up() -> None:
            for i, call in itertools.islice(numbered, max(0, most - len(unfinished))):
                unfinished[pool.submit(_guarded, fn, call)] = i

        try:
            top_up()  # the calls may fail as they are made: what was submitted is cancelled
            while unfinished:
                done, _ = wait(list(unfinished), return_when=FIRST_COMPLETED)
                for future in done:
                    i = unfinished.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise MissingPartsError(
                            "a worker process stopped before it finished its shard (killed, "
                            "or out of memory?): nothing was committed. Run the same log "
                            "again: files already stored are not stored twice"
                        ) from None
                    top_up()
                    yield i, result
        finally:
            if unfinished:
                stopped.set()
            pool.shutdown(wait=True, cancel_futures=True)


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def processes_engine(workers: int | None = None) -> ProcessEngine:
    """``workers`` processes on this machine (default: one per core this process may use)."""
    return ProcessEngine(workers)


def dask_engine(client: Any = None) -> DaskEngine:
    """The given `dask.distributed.Client`, else the current one."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            "Dask's distributed scheduler is not installed: pip install 'cairn[dask]'"
        ) from None
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError:
            raise InvalidInputError(
                "no Dask client: create one (dask.distributed.Client(...)) or pass client=..."
            ) from None
    return DaskEngine(client)


def ray_engine() -> RayEngine:
    """The Ray cluster this process is connected to."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("Ray is not installed: pip install 'cairn[ray]'") from None
    if not ray.is_initialized():
        raise InvalidInputError("Ray is not initialised: call ray.init(...) first")
    return RayEngine()


def pick_engine(client: Any = None, engine: str | Engine | None = None) -> Engine:
    """``client``: a Dask client, an `Engine`, or None; ``engine``: "dask", "ray",
    "processes" (one per core of this machine), an `Engine`, or None (a Dask client if there
    is a current one, else Ray when it is initialised)."""
    if engine is not None and not isinstance(engine, str):
        return engine
    if engine not in (None, "dask", "ray", "processes"):
        raise InvalidInputError(f"engine must be 'dask', 'ray' or 'processes', not {engine!r}")
    if client is not None and hasattr(client, "workers") and not hasattr(client, "submit"):
        return client  # type: ignore[no-any-return]  # an Engine already (not a Dask client)
    if engine == "ray":
        return ray_engine()
    if engine == "processes":
        return processes_engine()
    if engine == "dask" or client is not None:
        return dask_engine(client)
    try:
        return dask_engine()
    except (MissingDependencyError, InvalidInputError):
        pass
    try:
        return ray_engine()
    except (MissingDependencyError, InvalidInputError):
        pass
    raise InvalidInputError(
        "no cluster to run on: pass client=<dask.distributed.Client>, call ray.init() "
        "(engine='ray'), or use this machine's cores (engine='processes')"
    )


__all__ = [
    "RETRIES",
    "DaskEngine",
    "Engine",
    "ProcessEngine",
    "RayEngine",
    "available_cores",
    "dask_engine",
    "pick_engine",
    "processes_engine",
    "ray_engine",
]
