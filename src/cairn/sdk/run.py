"""`Run`: one execution of a script: its config, metrics, and the artifacts it used and logged."""

from __future__ import annotations

import atexit
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from cairn import config as cairn_config
from cairn.core import names
from cairn.core.records import LinkInfo, RunInfo, RunState, VersionInfo
from cairn.errors import InvalidInputError, PermissionDeniedError, RunFinishedError
from cairn.sdk import context, lockfile
from cairn.sdk.artifact import Artifact, artifact_at, draft_of, logged_info, mark_logged
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.checks import check_json
from cairn.sdk.gitinfo import read_git_info
from cairn.sdk.heartbeat import Heartbeat
from cairn.sdk.log_version import log_version
from cairn.sdk.resolve import resolve_ref
from cairn.sdk.run_config import Config, to_config
from cairn.service.parts import PartInfo

_FLUSH_ROWS = 200
_FLUSH_SECONDS = 2.0


def current_run() -> Run | None:
    """The active run of this process (None before `cairn.init` and after its `finish`)."""
    return context.current()


class Run:
    """A run of a script. Create with ``cairn.init(...)``; finish with ``run.finish()`` or by
    leaving a ``with`` block (an exception marks it failed)."""

    def __init__(self, info: RunInfo, backend: Backend, *, active: bool) -> None:
        self._info = info
        self._backend = backend
        self._active = active
        self._config = Config(info.config)
        self.summary: dict[str, Any] = dict(info.summary)
        self._metrics: list[tuple[int, dict[str, Any]]] = []
        self._step = 0
        self._last_flush = time.monotonic()
        self._pid = os.getpid()  # only this process finishes the run on its own (exit, errors)
        self._heartbeat: Heartbeat | None = None
        if active and info.state == "running":
            self._heartbeat = Heartbeat(backend.registry, info.id)

    # --- identity ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._info.id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def project(self) -> str:
        return self._info.project

    @property
    def job_type(self) -> str | None:
        return self._info.job_type

    @property
    def state(self) -> RunState:
        return self._info.state

    @property
    def info(self) -> RunInfo:
        return self._info

    @property
    def failure(self) -> str | None:
        """Why the run failed or crashed (``"ValueError: bad shape"``), else None."""
        return self._info.failure

    @property
    def config(self) -> Config:
        """The run's settings: a dict whose keys are also attributes (``run.config.lr``,
        ``run.config.update({...})``), values checked when set, saved when the run finishes
        (see `cairn.sdk.run_config`)."""
        return self._config

    @config.setter
    def config(self, value: Any) -> None:
        self._config = to_config(value)

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.name} ({self.id}) {self.state}>"

    def _repr_html_(self) -> str:
        """Jupyter shows a card: state, config, summary, the versions used and logged."""
        from cairn.sdk.notebook import run_html

        return run_html(self)

    def _check_lineage(self) -> None:
        """Artifacts may be logged and used by a run read from the registry (lineage added
        after the fact, whatever its state); the process's own run must still be running."""
        if self._active:
            self._check_open()

    def _check_open(self) -> None:
        if not self._active:
            raise RunFinishedError(
                f"run {self.name} ({self.id}) was read from the registry: only the process "
                "that started it (with cairn.init()) can log to it; start a new run to log more"
            )
        if self._info.state != "running":
            raise RunFinishedError(
                f"run {self.name} ({self.id}) is {self._info.state}; start a new run with "
                "cairn.init() to log more"
            )

    # --- metrics -----------------------------------------------------------------------------
    def log(self, data: dict[str, Any], step: int | None = None, commit: bool = True) -> None:
        """Record metrics for a step (default: the next one); the latest value of each key
        also goes into ``summary``."""
        self._check_open()
        row = check_json(data, "logged metrics", allow_nan=True)
        if step is not None:
            if step < self._step - 1:
                raise InvalidInputError(f"step {step} is before the last logged step")
            self._step = step
        self._metrics.append((self._step, row))
        if commit:
            self._step += 1
        self.summary.update(row)
        if (
            len(self._metrics) >= _FLUSH_ROWS
            or time.monotonic() - self._last_flush > _FLUSH_SECONDS
        ):
            self._flush()

    def _flush(self) -> None:
        if self._metrics:
            self._backend.registry.log_metrics(self.id, self._metrics)
            self._metrics = []
        self._last_flush = time.monotonic()

    def metrics(self) -> list[dict[str, Any]]:
        """Every logged row, oldest first, as ``{"_step": n, **values}``."""
        if self._active:
            self._flush()
        return [{"_step": m.step, **m.data} for m in self._backend.registry.run_metrics(self.id)]

    # --- artifacts ---------------------------------------------------------------------------
    def log_artifact(
        self,
        artifact: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Artifact:
        """Log a draft as this run's output. A path is logged as a new artifact (``name``
        defaults to the file or folder name, ``type`` to "dataset"); a URI (``s3://…``,
        ``gs://…``, ``az://…``, ``https://…``, ``file:///…``) as an artifact holding a
        reference to it. Logging content identical to an existing version makes no new
        version: the aliases are applied to that one. On a run read with ``Api().run(id)``
        this adds lineage after the fact (the run may be finished)."""
        self._check_lineage()
        artifact = self._as_draft(artifact, name, type, aliases, tags)
        logged = log_version(
            self._backend,
            self.project,
            draft_of(artifact),
            run_id=self.id,
            aliases=list(aliases or []),
            tags=list(tags or []),
        )
        mark_logged(artifact, logged, self._backend)
        return artifact

    def _as_draft(
        self,
        artifact: Artifact | str | os.PathLike[str],
        name: str | None,
        type: str | None,
        aliases: Sequence[str] | None,
        tags: Sequence[str] | None,
    ) -> Artifact:
        """The draft ``log_artifact`` (and upsert/finish) log: a path or URI becomes one."""
        if isinstance(artifact, str) and "://" in artifact:
            art = Artifact(name or _uri_name(artifact), type or "dataset")
            art.add_reference(artifact)
            artifact = art
        elif not isinstance(artifact, Artifact):
            path = os.fspath(artifact)
            art = Artifact(name or os.path.basename(os.path.abspath(path)), type or "dataset")
            if os.path.isdir(path):
                art.add_dir(path)
            else:
                art.add_file(path)
            artifact = art
        if isinstance(aliases, str) or isinstance(tags, str):
            raise InvalidInputError("aliases and tags are lists, e.g. aliases=['best']")
        if artifact.project is not None and artifact.project != self.project:
            raise InvalidInputError(
                f"artifact {artifact.name!r} belongs to project {artifact.project!r}, this run "
                f"to {self.project!r}"
            )
        return artifact

    # --- distributed versions (see cairn.sdk.parts) --------------------------------------------
    def upsert_artifact(
        self,
        artifact: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        distributed_id: str | None = None,
        *,
        part: str | None = None,
    ) -> Artifact:
        """Add this process's files to a version many processes build together (W&B's
        ``upsert_artifact``): its bytes are stored now, nothing is committed until one process
        calls `finish_artifact` with the same ``distributed_id``. ``part`` names this process's
        share (a shard number, a task id): upserting the same part again replaces it, so a
        retried task is harmless; without it the part is named by its content. Aliases, tags,
        metadata and description are given to `finish_artifact`. Returns the draft, unchanged."""
        self._check_open()
        if distributed_id is None:
            raise InvalidInputError(
                "upsert_artifact needs distributed_id=..., the same string in every process "
                "that adds to the version and in the one that finishes it"
            )
        artifact = self._as_draft(artifact, name, type, aliases, None)
        if [a for a in [*(aliases or []), *artifact.aliases] if a != "latest"]:
            raise InvalidInputError("give a distributed version's aliases to finish_artifact")
        from cairn.sdk.parts import store_part

        store_part(
            self._backend,
            self.project,
            draft_of(artifact),
            distributed_id=distributed_id,
            part=part,
            run_id=self.id,
        )
        return artifact

    def finish_artifact(
        self,
        artifact: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        distributed_id: str | None = None,
        *,
        tags: Sequence[str] | None = None,
        expected_parts: Sequence[str] | None = None,
    ) -> Artifact:
        """Commit every part upserted with ``distributed_id`` as one version, this run's output
        (W&B's ``finish_artifact``); files in ``artifact`` itself are one more part. The merge
        moves no file bytes. ``expected_parts``: the part ids that must have arrived, else
        `MissingPartsError` names the missing ones and nothing is committed. Two parts with
        different content at one path raise `PartConflictError` naming it. After a finish the
        same ``distributed_id`` starts a new version. Returns the logged artifact."""
        self._check_lineage()
        if distributed_id is None:
            raise InvalidInputError(
                "finish_artifact needs distributed_id=..., the one the parts were upserted with"
            )
        artifact = self._as_draft(artifact, name, type, aliases, tags)
        from cairn.sdk.parts import finish_parts

        finished = finish_parts(
            self._backend,
            self.project,
            draft_of(artifact),
            distributed_id=distributed_id,
            run_id=self.id,
            aliases=list(aliases or []),
            tags=list(tags or []),
            expected_parts=expected_parts,
        )
        mark_logged(artifact, finished.logged, self._backend)
        return artifact

    def artifact_parts(self, name: str, distributed_id: str) -> list[PartInfo]:
        """The parts of a distributed version that have arrived and are not finished yet."""
        return self._backend.parts.list(self.project, name, distributed_id=distributed_id)

    def use_artifact(self, artifact: str | Artifact, type: str | None = None) -> Artifact:
        """Declare an input: ``"name"``, ``"name:v3"``, ``"name:alias"`` or
        ``"project/name:alias"``, or an `Artifact`. Records the lineage edge and returns the
        version. A draft is logged first (as a version no run produced: this run only reads
        it). On a run read with ``Api().run(id)`` this adds lineage after the fact."""
        self._check_lineage()
        if isinstance(artifact, str) and artifact.count("/") == 2:
            artifact = artifact.split("/", 1)[1]  # W&B's "entity/project/name": no entities here
        if isinstance(artifact, Artifact) and artifact.is_draft:
            if artifact.project is not None and artifact.project != self.project:
                raise InvalidInputError(
                    f"artifact {artifact.name!r} belongs to project {artifact.project!r}, this "
                    f"run to {self.project!r}"
                )
            logged = log_version(
                self._backend, self.project, draft_of(artifact), run_id=None, aliases=[], tags=[]
            )
            mark_logged(artifact, logged, self._backend)
        if isinstance(artifact, Artifact):
            info = logged_info(artifact)
        else:
            ref = names.parse_ref(artifact)
            project = ref.project or self.project
            pin = lockfile.pinned(project, ref.name, ref.ref)
            if pin is None:
                # a registry's collection resolves through its link: lineage is recorded
                # against the real version
                info, _ = resolve_ref(self._backend.registry, artifact, self.project)
            else:
                path, found = pin
                info = self._backend.registry.resolve(project, ref.name, found.version)
                lockfile.check_digest(path, found, info.digest)
        if type is not None and info.type != type:
            raise InvalidInputError(f"{info.qualified_name} has type {info.type!r}, not {type!r}")
        self._backend.registry.record_use(self.id, info.id)
        return artifact_at(info, self._backend)

    def link_artifact(
        self, artifact: Artifact, target: str, aliases: Sequence[str] | None = None
    ) -> LinkInfo:
        """Link a logged version into a registry's collection (``"models/classifier"``)
        without copying bytes; the link is recorded with this run."""
        self._check_open()
        return artifact.link(target, aliases=aliases, run=self)

    def used_artifacts(self) -> list[Artifact]:
        return [self._wrap(v) for v in self._backend.registry.run_inputs(self.id)]

    def logged_artifacts(self) -> list[Artifact]:
        return [self._wrap(v) for v in self._backend.registry.run_outputs(self.id)]

    def _wrap(self, info: VersionInfo) -> Artifact:
        return artifact_at(info, self._backend)

    # --- lifecycle ---------------------------------------------------------------------------
    def finish(
        self, exit_code: int = 0, *, state: RunState | None = None, failure: str | None = None
    ) -> None:
        """Mark the run finished (or failed for a non-zero exit code). Idempotent. ``failure``
        says why a failed run failed (``with cairn.init()`` and an uncaught exception record
        the exception's type and message)."""
        if not self._active or self._info.state != "running":
            return
        final: RunState = state or ("finished" if exit_code == 0 else "failed")
        if final != "finished" and failure is None and exit_code != 0:
            failure = f"exit code {exit_code}"
        if self._heartbeat is not None and self._pid == os.getpid():
            self._heartbeat.stop()
        self._flush()
        self._info = self._backend.registry.update_run(
            self.id,
            state=final,
            summary=_finite(check_json(self.summary, "summary", allow_nan=True)),
            config=check_json(self.config, "config"),
            failure=failure if final != "finished" else None,
        )
        context.clear_current(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(state="crashed", failure=describe_failure(exc_type, exc))
        else:
            self.finish(state="failed", failure=describe_failure(exc_type, exc))


def describe_failure(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """``"ValueError: bad shape"``; a non-builtin type with its module
    (``"torch.OutOfMemoryError: ..."``); Ctrl-C said in words."""
    name = exc_type.__qualname__
    if exc_type.__module__ not in ("builtins", "__main__"):
        name = f"{exc_type.__module__}.{name}"
    if issubclass(exc_type, KeyboardInterrupt):
        return f"{name} (interrupted, e.g. Ctrl-C)"
    message = str(exc) if exc is not None else ""
    return f"{name}: {message}" if message else name


def _uri_name(uri: str) -> str:
    """An artifact name for a URI: its last path segment (or host/bucket), made valid."""
    import re
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    last = parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.netloc or "reference"
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", last).lstrip("._-")[:128]
    return cleaned or "reference"


def _finite(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as stored: a NaN or infinite number becomes the string "NaN", "Infinity" or
    "-Infinity" (what JSON cannot hold), so a run whose loss diverged still finishes."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        else:
            out[key] = value
    return out


def init(
    project: str | None = None,
    job_type: str | None = None,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    notes: str = "",
    save_code: bool = True,
) -> Run:
    """Start a run. ``project`` defaults to ``CAIRN_PROJECT``, else "default"."""
    project = names.check_project(project or cairn_config.default_project() or "default")
    if job_type is not None:
        names.check_type(job_type)
    for t in tags:
        names.check_tag(t)
    cfg = dict(to_config(config))
    backend = get_backend()
    git = read_git_info() if save_code else None
    diff_digest = None
    late_diff = None
    if git is not None and git.diff:
        try:
            diff_digest = backend.object_store.add(git.diff)
            backend.object_store.sync()
        except PermissionDeniedError:
            # a server refuses objects from a user with no project yet: their first run
            # creates the project (theirs), and then the diff is stored and recorded
            diff_digest, late_diff = None, git.diff
    info = backend.registry.create_run(
        project,
        name=name,
        job_type=job_type,
        config=cfg,
        tags=list(tags),
        notes=notes,
        host=socket.gethostname(),
        python_version=platform.python_version(),
        git_commit=git.commit if git else None,
        git_dirty=git.dirty if git else None,
        git_diff_digest=diff_digest,
    )
    if late_diff is not None:
        late = backend.object_store.add(late_diff)
        backend.object_store.sync()
        info = backend.registry.update_run(info.id, git_diff_digest=late)
    run = Run(info, backend, active=True)
    with context.lock():
        current = context.current()
        if current is not None and _owned_and_running(current):
            current.finish()
        context.set_current(run)
    return run


def _owned_and_running(run: Run) -> bool:
    """A running run this process started (a forked child inherits its parent's current run:
    it may log to it, but leaves finishing it to the parent)."""
    return run._active and run._info.state == "running" and run._pid == os.getpid()


def _require_current() -> Run:
    current = context.current()
    if current is None:
        raise RunFinishedError("no active run; call cairn.init() first")
    return current


def log(data: dict[str, Any], step: int | None = None) -> None:
    _require_current().log(data, step=step)


def log_artifact(
    artifact: Artifact | str | os.PathLike[str],
    name: str | None = None,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> Artifact:
    return _require_current().log_artifact(artifact, name, type, aliases, tags)


def use_artifact(artifact: str | Artifact, type: str | None = None) -> Artifact:
    return _require_current().use_artifact(artifact, type)


def finish(exit_code: int = 0) -> None:
    current = context.current()
    if current is not None:
        current.finish(exit_code)


_previous_excepthook = sys.excepthook


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    run = context.current()
    if run is not None and _owned_and_running(run):
        try:
            run.finish(
                state="crashed" if issubclass(exc_type, KeyboardInterrupt) else "failed",
                failure=describe_failure(exc_type, exc),
            )
        except Exception:
            pass
    _previous_excepthook(exc_type, exc, tb)


def _at_exit() -> None:
    run = context.current()
    if run is not None and _owned_and_running(run):
        try:
            run.finish()
        except Exception:
            pass


def run_view(info: RunInfo, backend: Backend) -> Run:
    """A read-only handle on a stored run."""
    return Run(info, backend, active=False)


def _after_fork_in_child() -> None:
    current = context.current()
    if current is not None:
        current._metrics = []  # rows the parent has not written yet are the parent's to write


sys.excepthook = _excepthook
atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
context.set_runs(run_view, init)
