"""Runs: creation (with generated names), state changes, metrics, and the heartbeat rule that
reports a silent run as crashed."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, cast, get_args

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn import config
from cairn.core.names import check_project
from cairn.core.records import MetricRow, RunInfo, RunState
from cairn.errors import InvalidInputError, RunFinishedError, RunNotFoundError
from cairn.metadata.tables import Project, Run, RunMetric
from cairn.service.sql.common import SqlBase, utcnow
from cairn.service.sql.projects import ensure_project, find_project, project_name
from cairn.service.validate import (
    check_int,
    check_page,
    check_str,
    check_tags,
    check_text,
    decode_metric,
    encode_metric,
    json_dict,
)

RUN_STATES: tuple[str, ...] = get_args(RunState)
FINAL_STATES = frozenset({"finished", "failed", "crashed"})
MAX_FAILURE = 2000  # characters of a failure kept: the type and message, not a traceback

_RUN_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "deft", "eager", "fancy",
    "fluent", "gentle", "glad", "golden", "hardy", "hazy", "jolly", "keen", "lively", "lucid",
    "mellow", "misty", "nimble", "noble", "polar", "proud", "quiet", "rapid", "rosy", "rustic",
    "sage", "serene", "sharp", "silver", "sleek", "solar", "steady", "sunny", "swift", "tidy",
    "vivid", "warm", "wild", "wise", "witty", "young", "zesty", "azure",
)  # fmt: skip
_NOUNS = (
    "aurora", "badger", "brook", "canyon", "cedar", "comet", "coral", "crane", "delta", "dune",
    "ember", "falcon", "fern", "field", "fjord", "forest", "galaxy", "glade", "grove", "harbor",
    "heron", "hill", "lake", "lark", "leaf", "meadow", "mesa", "moon", "moss", "nebula", "oak",
    "ocean", "otter", "pine", "planet", "prairie", "rain", "river", "sky", "snow", "sparrow",
    "star", "stone", "sun", "thunder", "tide", "valley", "wave",
)  # fmt: skip


def find_run(s: Session, run_id: str, *, lock: Literal["update", "share"] | None = None) -> Run:
    if not isinstance(run_id, str):
        raise InvalidInputError(f"run id must be a string, not {type(run_id).__name__}")
    query = sa.select(Run).where(Run.id == run_id)
    if lock == "update":
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    elif lock == "share":
        query = query.with_for_update(read=True)
    run = s.scalars(query).one_or_none()
    if run is None:
        raise RunNotFoundError(
            f"no run with id {run_id!r}: check the id (list runs with list_runs(project))"
        )
    return run


def _new_run_id() -> str:
    return "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(8))


def _generate_run_name(s: Session, project_id: int) -> str:
    """'adjective-noun-N' with N the run's number in the project; unique in the project
    (the caller holds the project's lock)."""
    number = (s.scalar(sa.select(sa.func.count()).where(Run.project_id == project_id)) or 0) + 1
    for attempt in range(50):
        suffix = str(number) if attempt < 25 else f"{number}{secrets.choice(_RUN_ID_ALPHABET)}"
        candidate = f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{suffix}"
        taken = s.scalar(
            sa.select(Run.id).where(Run.project_id == project_id, Run.name == candidate).limit(1)
        )
        if taken is None:
            return candidate
    return f"run-{number}-{_new_run_id()}"


def _silent_since() -> datetime:
    """Runs 'running' with no heartbeat since this moment are reported as crashed."""
    return utcnow() - timedelta(seconds=config.run_timeout())


def _last_sign_of_life() -> sa.ColumnElement[datetime]:
    return sa.func.coalesce(Run.heartbeat_at, Run.started_at)


def _state_is(state: str) -> sa.ColumnElement[bool]:
    """The SQL condition for runs *reported* in ``state`` (see `_reported_state`)."""
    cutoff = _silent_since()
    if state == "running":
        return sa.and_(Run.state == "running", _last_sign_of_life() >= cutoff)
    if state == "crashed":
        return sa.or_(
            Run.state == "crashed",
            sa.and_(Run.state == "running", _last_sign_of_life() < cutoff),
        )
    return Run.state == state


def _reported_state(run: Run) -> RunState:
    """A run stored as 'running' whose process stopped sending heartbeats (killed, out of
    memory, its machine gone) is reported as crashed. The stored state is left alone: if the
    process was only stalled, its next heartbeat or finish() puts things right."""
    if run.state == "running":
        last = run.heartbeat_at or run.started_at
        if last < _silent_since():
            return "crashed"
    return cast(RunState, run.state)


def run_info(run: Run, project: str) -> RunInfo:
    return RunInfo(
        id=run.id,
        project=project,
        name=run.name,
        job_type=run.job_type,
        state=_reported_state(run),
        started_at=run.started_at,
        finished_at=run.finished_at,
        config=run.config,
        summary=run.summary,
        tags=list(run.tags),
        notes=run.notes,
        host=run.host or "",
        python_version=run.python_version or "",
        git_commit=run.git_commit,
        git_dirty=run.git_dirty,
        git_diff_digest=run.git_diff_digest,
        user=run.user,
        heartbeat_at=run.heartbeat_at,
        failure=run.failure,
    )


class RunsMixin(SqlBase):
    def create_run(
        self,
        project: str,
        *,
        name: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        notes: str = "",
        host: str = "",
        python_version: str = "",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        git_diff_digest: str | None = None,
        user: str | None = None,
    ) -> RunInfo:
        check_project(project)
        if user is not None:
            check_str("user", user)
        if name is not None:
            check_text("run name", name)
        if job_type is not None:
            check_text("job type", job_type)
        run_config = json_dict("config", config)
        run_tags = check_tags(tags)
        check_str("notes", notes)
        check_str("host", host)
        check_str("python_version", python_version)
        if git_commit is not None:
            check_str("git_commit", git_commit)
        if git_dirty is not None and not isinstance(git_dirty, bool):
            raise InvalidInputError(f"git_dirty must be True, False or None, not {git_dirty!r}")
        if git_diff_digest is not None:
            check_str("git_diff_digest", git_diff_digest)

        def work(s: Session) -> RunInfo:
            now = utcnow()
            proj = ensure_project(s, project, lock=True)
            run_name = name if name is not None else _generate_run_name(s, proj.id)
            run = Run(
                id=_new_run_id(),
                project_id=proj.id,
                name=run_name,
                job_type=job_type,
                state="running",
                started_at=now,
                finished_at=None,
                heartbeat_at=now,
                config=run_config,
                summary={},
                tags=run_tags,
                notes=notes,
                host=host or None,
                python_version=python_version or None,
                git_commit=git_commit,
                git_dirty=git_dirty,
                git_diff_digest=git_diff_digest,
                user=user,
            )
            s.add(run)
            s.flush()
            return run_info(run, proj.name)

        return self._write(work)

    def update_run(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        summary: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        failure: str | None = None,
        git_diff_digest: str | None = None,
    ) -> RunInfo:
        if state is not None and state not in RUN_STATES:
            raise InvalidInputError(
                f"invalid run state {state!r}: use one of {', '.join(RUN_STATES)}"
            )
        new_summary = json_dict("summary", summary) if summary is not None else None
        new_config = json_dict("config", config) if config is not None else None
        new_tags = check_tags(tags) if tags is not None else None
        if notes is not None:
            check_str("notes", notes)
        if failure is not None:
            check_str("failure", failure)
            failure = failure[:MAX_FAILURE]
        if git_diff_digest is not None:
            check_str("git_diff_digest", git_diff_digest)

        def work(s: Session) -> RunInfo:
            run = find_run(s, run_id, lock="update")
            finished = run.state in FINAL_STATES
            if finished and state is not None and state != run.state:
                raise RunFinishedError(
                    f"run {run.name!r} ({run.id}) is already {run.state}; its state cannot "
                    f"change to {state!r}. Start a new run to keep working."
                )
            if finished and new_config is not None and new_config != run.config:
                raise RunFinishedError(
                    f"run {run.name!r} ({run.id}) is {run.state}; its config can no longer "
                    "change. Start a new run, or record the value in the summary."
                )
            if state is not None and state != run.state:
                run.state = state
                if state in FINAL_STATES:
                    run.finished_at = utcnow()
                    if state != "finished" and failure is not None:
                        run.failure = failure
            if new_config is not None:
                run.config = new_config
            if new_summary is not None:
                run.summary = new_summary
            if new_tags is not None:
                run.tags = new_tags
            if notes is not None:
                run.notes = notes
            if git_diff_digest is not None:
                run.git_diff_digest = git_diff_digest
            if run.state == "running":
                run.heartbeat_at = utcnow()  # any update, even an empty one, is a sign of life
            s.flush()
            return run_info(run, project_name(s, run.project_id))

        return self._write(work)

    def log_metrics(self, run_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        prepared: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            if not isinstance(row, tuple | list) or len(row) != 2:
                raise InvalidInputError(f"metric rows are (step, dict) pairs, not {row!r}")
            step = check_int("step", row[0], minimum=None)
            data = json_dict(f"metrics at step {step}", encode_metric(row[1]))
            prepared.append((step, data))

        def work(s: Session) -> None:
            run = find_run(s, run_id, lock="share")
            if run.state in FINAL_STATES:
                raise RunFinishedError(
                    f"run {run.name!r} ({run.id}) is {run.state}: metrics can no longer be "
                    "logged to it. Start a new run."
                )
            if prepared:
                at = utcnow()
                s.execute(
                    sa.insert(RunMetric),
                    [{"run_id": run.id, "step": st, "data": d, "at": at} for st, d in prepared],
                )

        self._write(work)

    def get_run(self, run_id: str) -> RunInfo:
        def work(s: Session) -> RunInfo:
            run = find_run(s, run_id)
            return run_info(run, project_name(s, run.project_id))

        return self._read(work)

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunInfo]:
        wanted = sorted({i for i in run_ids if isinstance(i, str)})
        if not wanted:
            return {}

        def work(s: Session) -> dict[str, RunInfo]:
            rows = s.execute(
                sa.select(Run, Project.name)
                .join(Project, Project.id == Run.project_id)
                .where(Run.id.in_(wanted))
            ).all()
            return {run.id: run_info(run, project) for run, project in rows}

        return self._read(work)

    def list_runs(
        self,
        project: str,
        *,
        job_type: str | None = None,
        state: RunState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        check_project(project)
        check_page(limit, offset)
        if state is not None and state not in RUN_STATES:
            raise InvalidInputError(
                f"invalid run state {state!r}: use one of {', '.join(RUN_STATES)}"
            )

        def work(s: Session) -> list[RunInfo]:
            proj = find_project(s, project)
            query = sa.select(Run).where(Run.project_id == proj.id)
            if job_type is not None:
                query = query.where(Run.job_type == job_type)
            if state is not None:
                query = query.where(_state_is(state))
            query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
            runs = s.scalars(query.offset(offset)).all()
            return [run_info(run, proj.name) for run in runs]

        return self._read(work)

    def run_metrics(
        self, run_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[MetricRow]:
        """Every row in step order; ``limit``/``offset`` read one page (the server's API)."""
        if limit is not None:
            check_page(limit, offset)

        def work(s: Session) -> list[MetricRow]:
            run = find_run(s, run_id)
            query = (
                sa.select(RunMetric.step, RunMetric.data, RunMetric.at)
                .where(RunMetric.run_id == run.id)
                .order_by(RunMetric.step, RunMetric.id)
            )
            if limit is not None:
                query = query.limit(limit).offset(offset)
            rows = s.execute(query)
            return [MetricRow(step=st, data=decode_metric(d), at=at) for st, d, at in rows]

        return self._read(work)
