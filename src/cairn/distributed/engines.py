"""The engines a distributed log or download runs its tasks on: a Dask client's futures or Ray
tasks. Each runs a stream of calls of one function and yields their results as they finish,
with at most `window` calls submitted and unfinished at a time (the caller makes the next call
only when one is wanted, so the driver's memory does not grow with the number of files); the
engine's own retries re-run a failed task (parts are idempotent)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from cairn.errors import InvalidInputError, MissingDependencyError

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


def pick_engine(client: Any = None, engine: str | None = None) -> Engine:
    """``client``: a Dask client, an `Engine`, or None; ``engine``: "dask", "ray" or None
    (a Dask client if there is a current one, else Ray when it is initialised)."""
    if engine not in (None, "dask", "ray"):
        raise InvalidInputError(f"engine must be 'dask' or 'ray', not {engine!r}")
    if client is not None and hasattr(client, "workers") and not hasattr(client, "submit"):
        return client  # type: ignore[no-any-return]  # an Engine already (not a Dask client)
    if engine == "ray":
        return ray_engine()
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
        "no cluster to run on: pass client=<dask.distributed.Client>, or call ray.init() "
        "(engine='ray')"
    )


__all__ = [
    "RETRIES",
    "DaskEngine",
    "Engine",
    "RayEngine",
    "dask_engine",
    "pick_engine",
    "ray_engine",
]
