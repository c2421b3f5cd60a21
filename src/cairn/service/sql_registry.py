"""`SqlRegistry`: the `Registry` contract on SQLAlchemy (SQLite for the embedded mode,
PostgreSQL for the server).

Every public method is one short transaction (see `cairn.metadata.engine.transaction`); nothing
another process would need is kept in memory, so any number of processes may share a database.
Writers that allocate version numbers or move aliases lock the artifact first
(`lock_artifact`; ``BEGIN IMMEDIATE`` already serialises writers on SQLite).
"""

from __future__ import annotations

import difflib
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn import config
from cairn.core.digest import is_digest
from cairn.core.names import (
    check_alias,
    check_artifact_name,
    check_project,
    check_type,
    is_version_label,
)
from cairn.core.records import (
    ArtifactInfo,
    HistoryEntry,
    LineageEdge,
    LineageGraph,
    LineageNode,
    MetricRow,
    ProjectInfo,
    RunInfo,
    RunState,
    VersionInfo,
)
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidInputError,
    InvalidNameError,
    ProjectNotFoundError,
    RunFinishedError,
    RunNotFoundError,
    StateError,
)
from cairn.metadata.engine import create_engine, lock_artifact, sqlite_path, transaction
from cairn.metadata.migrate import ensure_schema
from cairn.metadata.tables import (
    Alias,
    Artifact,
    History,
    Project,
    Run,
    RunArtifact,
    RunMetric,
    Version,
    VersionTag,
)
from cairn.service.registry import Direction, Registry
from cairn.service.validate import (
    check_aliases,
    check_int,
    check_page,
    check_str,
    check_tags,
    check_text,
    decode_metric,
    encode_metric,
    json_dict,
    listing,
)

T = TypeVar("T")

COMMITTED = "committed"
DELETED = "deleted"
INPUT = "input"
OUTPUT = "output"
RUN_STATES: tuple[str, ...] = get_args(RunState)
FINAL_STATES = frozenset({"finished", "failed", "crashed"})
_CHUNK = 500  # ids per IN (...) list
_SHOWN = 5  # names listed in a not-found message

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


# --- validation -----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the registry ---------------------------------------------------------------------------


class SqlRegistry:
    """The metadata registry on a SQLAlchemy database URL. Opening it brings the schema to
    the current revision."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_engine(url)
        try:
            ensure_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (the server keeps its account tables in the same database)."""
        return self._engine

    def __repr__(self) -> str:
        return f"SqlRegistry({self._engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=True)

    # --- projects -------------------------------------------------------------------------

    def list_projects(self) -> list[ProjectInfo]:
        def work(s: Session) -> list[ProjectInfo]:
            artifacts = (
                sa.select(sa.func.count())
                .where(Artifact.project_id == Project.id)
                .scalar_subquery()
            )
            runs = sa.select(sa.func.count()).where(Run.project_id == Project.id).scalar_subquery()
            rows = s.execute(
                sa.select(Project.name, Project.created_at, artifacts, runs).order_by(Project.name)
            )
            return [
                ProjectInfo(name=n, created_at=c, artifact_count=a, run_count=r)
                for n, c, a, r in rows
            ]

        return self._read(work)

    def _project(self, s: Session, name: str) -> Project:
        project = s.scalars(sa.select(Project).where(Project.name == name)).one_or_none()
        if project is not None:
            return project
        names = list(s.scalars(sa.select(Project.name).order_by(Project.name).limit(1000)))
        total = s.scalar(sa.select(sa.func.count()).select_from(Project)) or 0
        if not names:
            raise ProjectNotFoundError(
                f"project {name!r} does not exist, and there are no projects yet: "
                "log a run or an artifact to create one"
            )
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ProjectNotFoundError(
            f"project {name!r} does not exist.{hint} Projects: {listing(names, total)}."
        )

    def _ensure_project(self, s: Session, name: str, *, lock: bool = False) -> Project:
        query = sa.select(Project).where(Project.name == name)
        if lock:
            # FOR NO KEY UPDATE: serialises run creation in the project without blocking
            # inserts that merely reference it
            query = query.with_for_update(key_share=True)
        project = s.scalars(query).one_or_none()
        if project is None:
            _insert_ignore(s, Project, {"name": name, "created_at": _now()}, ["name"])
            project = s.scalars(query.execution_options(populate_existing=True)).one()
        return project

    # --- runs -----------------------------------------------------------------------------

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
            now = _now()
            proj = self._ensure_project(s, project, lock=True)
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
            return _run_info(run, proj.name)

        return self._write(work)

    def _run(
        self, s: Session, run_id: str, *, lock: Literal["update", "share"] | None = None
    ) -> Run:
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

    def _project_name(self, s: Session, project_id: int) -> str:
        return s.execute(sa.select(Project.name).where(Project.id == project_id)).scalar_one()

    def update_run(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        summary: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
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

        def work(s: Session) -> RunInfo:
            run = self._run(s, run_id, lock="update")
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
                    run.finished_at = _now()
            if new_config is not None:
                run.config = new_config
            if new_summary is not None:
                run.summary = new_summary
            if new_tags is not None:
                run.tags = new_tags
            if notes is not None:
                run.notes = notes
            if run.state == "running":
                run.heartbeat_at = _now()  # any update, even an empty one, is a sign of life
            s.flush()
            return _run_info(run, self._project_name(s, run.project_id))

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
            run = self._run(s, run_id, lock="share")
            if run.state in FINAL_STATES:
                raise RunFinishedError(
                    f"run {run.name!r} ({run.id}) is {run.state}: metrics can no longer be "
                    "logged to it. Start a new run."
                )
            if prepared:
                at = _now()
                s.execute(
                    sa.insert(RunMetric),
                    [{"run_id": run.id, "step": st, "data": d, "at": at} for st, d in prepared],
                )

        self._write(work)

    def get_run(self, run_id: str) -> RunInfo:
        def work(s: Session) -> RunInfo:
            run = self._run(s, run_id)
            return _run_info(run, self._project_name(s, run.project_id))

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
            proj = self._project(s, project)
            query = sa.select(Run).where(Run.project_id == proj.id)
            if job_type is not None:
                query = query.where(Run.job_type == job_type)
            if state is not None:
                query = query.where(_state_is(state))
            query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
            runs = s.scalars(query.offset(offset)).all()
            return [_run_info(run, proj.name) for run in runs]

        return self._read(work)

    def run_metrics(
        self, run_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[MetricRow]:
        """Every row in step order; ``limit``/``offset`` read one page (the server's API)."""
        if limit is not None:
            check_page(limit, offset)

        def work(s: Session) -> list[MetricRow]:
            run = self._run(s, run_id)
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

    # --- artifacts and versions -------------------------------------------------------------

    def commit_version(
        self,
        project: str,
        name: str,
        type: str,
        *,
        digest: str,
        size: int,
        file_count: int,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
    ) -> tuple[VersionInfo, bool]:
        check_project(project)
        if user is not None:
            check_str("user", user)
        check_artifact_name(name)
        check_type(type)
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInputError(
                f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
            )
        check_int("size", size)
        check_int("file_count", file_count)
        check_str("description", description)
        meta = json_dict("metadata", metadata)
        want_aliases = check_aliases(aliases)
        want_tags = check_tags(tags)

        def work(s: Session) -> tuple[VersionInfo, bool]:
            run = self._run(s, run_id) if run_id is not None else None
            who = user if user is not None else (run.user if run is not None else None)
            proj = self._ensure_project(s, project)
            artifact = self._ensure_artifact(s, proj, name, type, description)
            now = _now()
            existing = s.scalars(
                sa.select(Version)
                .where(
                    Version.artifact_id == artifact.id,
                    Version.digest == digest,
                    Version.state == COMMITTED,
                )
                .order_by(Version.version.desc())
                .limit(1)
            ).one_or_none()
            if existing is not None:
                changed = _add_aliases(s, artifact.id, existing, want_aliases, run_id, who, now)
                changed |= _set_tags(s, existing, want_tags, run_id, who, now, replace=False)
                if changed:
                    artifact.updated_at = now
                if run is not None:
                    _add_edge(s, run.id, existing.id, OUTPUT, now)
                return _version_infos(s, [existing])[0], False

            last = s.scalar(
                sa.select(sa.func.max(Version.version)).where(Version.artifact_id == artifact.id)
            )
            version = Version(
                artifact_id=artifact.id,
                version=0 if last is None else last + 1,
                digest=digest,
                size=size,
                file_count=file_count,
                description=description,
                meta=meta,
                created_at=now,
                run_id=run_id,
                state=COMMITTED,
            )
            s.add(version)
            s.flush()
            _add_aliases(s, artifact.id, version, want_aliases, run_id, who, now, record=False)
            _set_tags(s, version, want_tags, run_id, who, now, replace=False, record=False)
            created = {
                "version": version.version,
                "digest": digest,
                "aliases": sorted(want_aliases),
                "tags": sorted(want_tags),
            }
            _add_history(s, version.id, "created", None, created, now, run_id, who)
            artifact.updated_at = now
            if description:
                artifact.description = description
            if run is not None:
                _add_edge(s, run.id, version.id, OUTPUT, now)
            s.flush()
            return _version_infos(s, [version])[0], True

        return self._write(work)

    def _ensure_artifact(
        self, s: Session, project: Project, name: str, type: str, description: str
    ) -> Artifact:
        query = sa.select(Artifact).where(Artifact.project_id == project.id, Artifact.name == name)
        artifact = s.scalars(query).one_or_none()
        if artifact is None:
            now = _now()
            values = {
                "project_id": project.id,
                "name": name,
                "type": type,
                "description": description,
                "created_at": now,
                "updated_at": now,
            }
            _insert_ignore(s, Artifact, values, ["project_id", "name"])
            artifact = s.scalars(query.execution_options(populate_existing=True)).one()
        lock_artifact(s, artifact.id)
        if artifact.type != type:
            raise InvalidNameError(
                f"artifact {project.name}/{name} already exists with type {artifact.type!r}, "
                f"not {type!r}: log it with type={artifact.type!r}, or choose another name"
            )
        return artifact

    def _artifact(self, s: Session, project: str, name: str) -> tuple[Project, Artifact]:
        proj = self._project(s, project)
        artifact = s.scalars(
            sa.select(Artifact).where(Artifact.project_id == proj.id, Artifact.name == name)
        ).one_or_none()
        if artifact is not None:
            return proj, artifact
        names = list(
            s.scalars(
                sa.select(Artifact.name)
                .where(Artifact.project_id == proj.id)
                .order_by(Artifact.name)
                .limit(1000)
            )
        )
        if not names:
            raise ArtifactNotFoundError(
                f"artifact {name!r} does not exist in project {project!r}, which has no "
                "artifacts yet: log it first"
            )
        total = s.scalar(
            sa.select(sa.func.count()).select_from(Artifact).where(Artifact.project_id == proj.id)
        )
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ArtifactNotFoundError(
            f"artifact {name!r} does not exist in project {project!r}.{hint} "
            f"Artifacts there: {listing(names, total or 0)}."
        )

    def resolve(self, project: str, name: str, ref: str = "latest") -> VersionInfo:
        check_project(project)
        check_artifact_name(name)
        if not isinstance(ref, str):
            raise InvalidNameError(f"invalid version reference {ref!r}")
        if ref.startswith("blake3:"):
            if not is_digest(ref):
                raise InvalidNameError(
                    f"invalid digest {ref!r}: expected 'blake3:' and 64 lowercase hex digits"
                )
        elif ref != "latest" and not is_version_label(ref):
            check_alias(ref)

        def work(s: Session) -> VersionInfo:
            _, artifact = self._artifact(s, project, name)
            live = sa.select(Version).where(
                Version.artifact_id == artifact.id, Version.state == COMMITTED
            )
            if ref == "latest":
                query = live.order_by(Version.version.desc()).limit(1)
            elif is_version_label(ref):
                query = live.where(Version.version == int(ref[1:]))
            elif ref.startswith("blake3:"):
                query = live.where(Version.digest == ref).order_by(Version.version.desc()).limit(1)
            else:
                query = live.join(Alias, Alias.version_id == Version.id).where(
                    Alias.artifact_id == artifact.id, Alias.alias == ref
                )
            version = s.scalars(query).first()
            if version is None:
                raise ArtifactNotFoundError(_missing_ref_message(s, project, artifact, ref))
            return _version_infos(s, [version])[0]

        return self._read(work)

    def get_version(self, version_id: int) -> VersionInfo:
        def work(s: Session) -> VersionInfo:
            return _version_infos(s, [_version(s, version_id)])[0]

        return self._read(work)

    def list_artifacts(
        self,
        project: str,
        *,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ArtifactInfo]:
        check_project(project)
        if type is not None:
            check_type(type)
        if search is not None:
            check_str("search", search)
        check_page(limit, offset)

        def work(s: Session) -> list[ArtifactInfo]:
            proj = self._project(s, project)
            query = sa.select(Artifact).where(Artifact.project_id == proj.id)
            if type is not None:
                query = query.where(Artifact.type == type)
            if search:
                pattern = "%" + _escape_like(search) + "%"
                query = query.where(
                    sa.or_(
                        Artifact.name.ilike(pattern, escape="\\"),
                        Artifact.description.ilike(pattern, escape="\\"),
                    )
                )
            query = query.order_by(Artifact.name).limit(limit).offset(offset)
            artifacts = s.scalars(query).all()
            stats = _artifact_stats(s, [a.id for a in artifacts])
            result = []
            for a in artifacts:
                count, latest, latest_size = stats.get(a.id, (0, None, None))
                result.append(
                    ArtifactInfo(
                        project=proj.name,
                        name=a.name,
                        type=a.type,
                        created_at=a.created_at,
                        updated_at=a.updated_at,
                        version_count=count,
                        latest_version=latest,
                        latest_size=latest_size,
                        description=a.description,
                    )
                )
            return result

        return self._read(work)

    def list_versions(
        self, project: str, name: str, *, limit: int = 100, offset: int = 0
    ) -> list[VersionInfo]:
        check_project(project)
        check_artifact_name(name)
        check_page(limit, offset)

        def work(s: Session) -> list[VersionInfo]:
            _, artifact = self._artifact(s, project, name)
            versions = s.scalars(
                sa.select(Version)
                .where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
                .order_by(Version.version.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return _version_infos(s, versions)

        return self._read(work)

    def update_version(
        self,
        version_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> VersionInfo:
        if description is not None:
            check_str("description", description)
        meta = json_dict("metadata", metadata) if metadata is not None else None
        want_aliases = check_aliases(aliases) if aliases is not None else None
        want_tags = check_tags(tags) if tags is not None else None
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> VersionInfo:
            if run_id is not None:
                self._run(s, run_id)
            version = _version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state != COMMITTED:
                raise StateError(
                    f"version {version.id} ({_label(s, version)}) is deleted and cannot be "
                    "changed; log the files again to make a new version"
                )
            now = _now()
            changed = False
            if description is not None and description != version.description:
                _add_history(
                    s,
                    version.id,
                    "description",
                    version.description,
                    description,
                    now,
                    run_id,
                    user,
                )
                version.description = description
                changed = True
            if meta is not None and meta != version.meta:
                _add_history(s, version.id, "metadata", version.meta, meta, now, run_id, user)
                version.meta = meta
                changed = True
            if want_aliases is not None:
                changed |= _set_aliases(
                    s, version.artifact_id, version, want_aliases, run_id, user, now
                )
            if want_tags is not None:
                changed |= _set_tags(s, version, want_tags, run_id, user, now, replace=True)
            if changed:
                s.execute(
                    sa.update(Artifact)
                    .where(Artifact.id == version.artifact_id)
                    .values(updated_at=now)
                )
            s.flush()
            return _version_infos(s, [version])[0]

        return self._write(work)

    def delete_version(
        self,
        version_id: int,
        *,
        force: bool = False,
        run_id: str | None = None,
        user: str | None = None,
    ) -> None:
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> None:
            if run_id is not None:
                self._run(s, run_id)
            version = _version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state == DELETED:
                return  # already deleted: deleting is idempotent
            current = _aliases_of(s, version.id)
            if current and not force:
                raise StateError(
                    f"{_label(s, version)} has aliases {', '.join(current)}: move or remove "
                    "them first (update_version(..., aliases=[])), or pass force=True to "
                    "delete it and drop its aliases"
                )
            now = _now()
            _set_aliases(s, version.artifact_id, version, [], run_id, user, now)
            _add_history(s, version.id, "deleted", COMMITTED, DELETED, now, run_id, user)
            version.state = DELETED
            s.execute(
                sa.update(Artifact).where(Artifact.id == version.artifact_id).values(updated_at=now)
            )

        self._write(work)

    def history(self, version_id: int) -> list[HistoryEntry]:
        def work(s: Session) -> list[HistoryEntry]:
            version = _version(s, version_id)
            rows = s.scalars(
                sa.select(History).where(History.version_id == version.id).order_by(History.id)
            )
            return [
                HistoryEntry(
                    version_id=h.version_id,
                    field=h.field,
                    old=h.old,
                    new=h.new,
                    at=h.at,
                    run_id=h.run_id,
                    user=h.user,
                )
                for h in rows
            ]

        return self._read(work)

    # --- lineage ----------------------------------------------------------------------------

    def record_use(self, run_id: str, version_id: int) -> None:
        def work(s: Session) -> None:
            run = self._run(s, run_id)
            version = _version(s, version_id)
            _add_edge(s, run.id, version.id, INPUT, _now())

        self._write(work)

    def logged_by(self, version_id: int) -> RunInfo | None:
        def work(s: Session) -> RunInfo | None:
            version = _version(s, version_id)
            if version.run_id is None:
                return None
            run = self._run(s, version.run_id)
            return _run_info(run, self._project_name(s, run.project_id))

        return self._read(work)

    def used_by(self, version_id: int) -> list[RunInfo]:
        def work(s: Session) -> list[RunInfo]:
            version = _version(s, version_id)
            rows = s.execute(
                sa.select(Run, Project.name)
                .join(RunArtifact, RunArtifact.run_id == Run.id)
                .join(Project, Project.id == Run.project_id)
                .where(RunArtifact.version_id == version.id, RunArtifact.direction == INPUT)
                .order_by(RunArtifact.id)
            )
            return [_run_info(run, project) for run, project in rows]

        return self._read(work)

    def _run_versions(self, run_id: str, direction: str) -> list[VersionInfo]:
        def work(s: Session) -> list[VersionInfo]:
            run = self._run(s, run_id)
            versions = s.scalars(
                sa.select(Version)
                .join(RunArtifact, RunArtifact.version_id == Version.id)
                .where(RunArtifact.run_id == run.id, RunArtifact.direction == direction)
                .order_by(RunArtifact.id)
            ).all()
            return _version_infos(s, versions)

        return self._read(work)

    def run_inputs(self, run_id: str) -> list[VersionInfo]:
        return self._run_versions(run_id, INPUT)

    def run_outputs(self, run_id: str) -> list[VersionInfo]:
        return self._run_versions(run_id, OUTPUT)

    def lineage(
        self, version_id: int, *, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        if direction not in ("up", "down", "both"):
            raise InvalidInputError(
                f"invalid lineage direction {direction!r}: use 'up', 'down' or 'both'"
            )
        if depth is not None:
            check_int("depth", depth)

        def work(s: Session) -> LineageGraph:
            root = _version(s, version_id)
            root_id = f"version:{root.id}"
            depths: dict[str, int] = {root_id: 0}
            edges: set[tuple[str, str]] = set()
            if direction in ("up", "both"):
                _walk(s, root.id, upstream=True, depth=depth, depths=depths, edges=edges)
            if direction in ("down", "both"):
                _walk(s, root.id, upstream=False, depth=depth, depths=depths, edges=edges)
            nodes = _lineage_nodes(s, depths)
            nodes.sort(key=lambda n: (n.id != root_id, n.depth, n.id))
            return LineageGraph(
                root=root_id,
                nodes=nodes,
                edges=[LineageEdge(source=a, target=b) for a, b in sorted(edges)],
            )

        return self._read(work)

    def versions_with_digest(self, digest: str) -> list[VersionInfo]:
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInputError(
                f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
            )

        def work(s: Session) -> list[VersionInfo]:
            versions = s.scalars(
                sa.select(Version)
                .where(Version.digest == digest, Version.state == COMMITTED)
                .order_by(Version.id)
            ).all()
            return _version_infos(s, versions)

        return self._read(work)

    def all_root_digests(self) -> list[str]:
        def work(s: Session) -> list[str]:
            return list(
                s.scalars(
                    sa.select(Version.digest)
                    .where(Version.state == COMMITTED)
                    .distinct()
                    .order_by(Version.digest)
                )
            )

        return self._read(work)


# --- helpers working inside a transaction ----------------------------------------------------


def _insert_ignore(
    s: Session,
    model: type[Project] | type[Artifact] | type[RunArtifact],
    values: dict[str, Any],
    conflict: list[str],
) -> None:
    """INSERT unless a row with the same `conflict` columns exists (possibly being inserted by
    a concurrent transaction, which PostgreSQL waits for)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        s.execute(pg_insert(model).values(values).on_conflict_do_nothing(index_elements=conflict))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        s.execute(
            sqlite_insert(model).values(values).on_conflict_do_nothing(index_elements=conflict)
        )
    else:  # pragma: no cover - other databases are not supported yet
        try:
            with s.begin_nested():
                s.execute(sa.insert(model).values(values))
        except sa.exc.IntegrityError:
            pass


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
    return _now() - timedelta(seconds=config.run_timeout())


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


def _run_info(run: Run, project: str) -> RunInfo:
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
    )


def _version(s: Session, version_id: int) -> Version:
    check_int("version id", version_id)
    version = s.get(Version, version_id)
    if version is None:
        raise ArtifactNotFoundError(
            f"no artifact version with id {version_id}: check the id, or resolve the version "
            "by name (resolve(project, name, 'latest'))"
        )
    return version


def _label(s: Session, version: Version) -> str:
    project, name = s.execute(
        sa.select(Project.name, Artifact.name)
        .join(Artifact, Artifact.project_id == Project.id)
        .where(Artifact.id == version.artifact_id)
    ).one()
    return f"{project}/{name}:v{version.version}"


def _aliases_of(s: Session, version_id: int) -> list[str]:
    return list(
        s.scalars(
            sa.select(Alias.alias).where(Alias.version_id == version_id).order_by(Alias.alias)
        )
    )


def _add_history(
    s: Session,
    version_id: int,
    field: str,
    old: Any,
    new: Any,
    at: datetime,
    run_id: str | None,
    user: str | None,
) -> None:
    s.add(
        History(
            version_id=version_id, field=field, old=old, new=new, at=at, run_id=run_id, user=user
        )
    )


def _add_edge(s: Session, run_id: str, version_id: int, direction: str, at: datetime) -> None:
    values = {"run_id": run_id, "version_id": version_id, "direction": direction, "at": at}
    _insert_ignore(s, RunArtifact, values, ["run_id", "version_id", "direction"])


def _set_aliases(
    s: Session,
    artifact_id: int,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    record: bool = True,
) -> bool:
    """Make `wanted` the version's aliases, moving them from other versions of the artifact
    (with a history entry on each version that changed). True when anything changed."""
    current = set(_aliases_of(s, version.id))
    wanted_set = set(wanted)
    changed = _move_aliases_here(s, artifact_id, version, wanted_set - current, run_id, user, at)
    removed = current - wanted_set
    if removed:
        s.execute(sa.delete(Alias).where(Alias.version_id == version.id, Alias.alias.in_(removed)))
    if (changed or removed) and record:
        _add_history(
            s, version.id, "aliases", sorted(current), sorted(wanted_set), at, run_id, user
        )
    return changed or bool(removed)


def _add_aliases(
    s: Session,
    artifact_id: int,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    record: bool = True,
) -> bool:
    """Add `wanted` to the version's aliases (keeping the others)."""
    if not wanted:
        return False
    current = set(_aliases_of(s, version.id))
    return _set_aliases(
        s, artifact_id, version, sorted(current | set(wanted)), run_id, user, at, record=record
    )


def _move_aliases_here(
    s: Session,
    artifact_id: int,
    version: Version,
    new: set[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
) -> bool:
    if not new:
        return False
    holders = s.execute(
        sa.select(Alias.alias, Alias.version_id).where(
            Alias.artifact_id == artifact_id, Alias.alias.in_(new)
        )
    ).all()
    moved: dict[int, set[str]] = defaultdict(set)
    for alias, holder in holders:
        moved[holder].add(alias)
    for holder, names in sorted(moved.items()):
        before = _aliases_of(s, holder)
        after = [a for a in before if a not in names]
        _add_history(s, holder, "aliases", before, after, at, run_id, user)
        s.execute(
            sa.update(Alias)
            .where(Alias.artifact_id == artifact_id, Alias.alias.in_(names))
            .values(version_id=version.id)
        )
    fresh = new - {alias for alias, _ in holders}
    if fresh:
        s.execute(
            sa.insert(Alias),
            [
                {"artifact_id": artifact_id, "alias": a, "version_id": version.id}
                for a in sorted(fresh)
            ],
        )
    return True


def _set_tags(
    s: Session,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    replace: bool,
    record: bool = True,
) -> bool:
    current = set(s.scalars(sa.select(VersionTag.tag).where(VersionTag.version_id == version.id)))
    target = set(wanted) if replace else current | set(wanted)
    added, removed = target - current, current - target
    if removed:
        s.execute(
            sa.delete(VersionTag).where(
                VersionTag.version_id == version.id, VersionTag.tag.in_(removed)
            )
        )
    if added:
        s.execute(
            sa.insert(VersionTag), [{"version_id": version.id, "tag": t} for t in sorted(added)]
        )
    if (added or removed) and record:
        _add_history(s, version.id, "tags", sorted(current), sorted(target), at, run_id, user)
    return bool(added or removed)


def _version_infos(s: Session, versions: Sequence[Version]) -> list[VersionInfo]:
    """VersionInfo for each version, with a fixed number of queries for the whole list."""
    if not versions:
        return []
    ids = [v.id for v in versions]
    artifact_ids = sorted({v.artifact_id for v in versions})
    artifacts: dict[int, tuple[str, str, str]] = {}
    latest: dict[int, int] = {}
    aliases: dict[int, list[str]] = defaultdict(list)
    tags: dict[int, list[str]] = defaultdict(list)
    for chunk in _chunks(artifact_ids):
        for aid, name, type_, project in s.execute(
            sa.select(Artifact.id, Artifact.name, Artifact.type, Project.name)
            .join(Project, Project.id == Artifact.project_id)
            .where(Artifact.id.in_(chunk))
        ):
            artifacts[aid] = (project, name, type_)
        for aid, top in s.execute(
            sa.select(Version.artifact_id, sa.func.max(Version.version))
            .where(Version.artifact_id.in_(chunk), Version.state == COMMITTED)
            .group_by(Version.artifact_id)
        ):
            latest[aid] = top
    for chunk in _chunks(ids):
        for vid, alias in s.execute(
            sa.select(Alias.version_id, Alias.alias)
            .where(Alias.version_id.in_(chunk))
            .order_by(Alias.alias)
        ):
            aliases[vid].append(alias)
        for vid, tag in s.execute(
            sa.select(VersionTag.version_id, VersionTag.tag)
            .where(VersionTag.version_id.in_(chunk))
            .order_by(VersionTag.tag)
        ):
            tags[vid].append(tag)
    result = []
    for v in versions:
        project, name, type_ = artifacts[v.artifact_id]
        is_latest = v.state == COMMITTED and latest.get(v.artifact_id) == v.version
        result.append(
            VersionInfo(
                id=v.id,
                project=project,
                name=name,
                type=type_,
                version=v.version,
                digest=v.digest,
                size=v.size,
                file_count=v.file_count,
                description=v.description,
                metadata=v.meta,
                aliases=(["latest"] if is_latest else []) + aliases[v.id],
                tags=tags[v.id],
                created_at=v.created_at,
                run_id=v.run_id,
                state=cast(Literal["committed", "deleted"], v.state),
            )
        )
    return result


def _artifact_stats(
    s: Session, artifact_ids: Sequence[int]
) -> dict[int, tuple[int, int | None, int | None]]:
    """artifact id -> (live version count, latest live version, its size)."""
    stats: dict[int, tuple[int, int | None, int | None]] = {}
    for chunk in _chunks(artifact_ids):
        live = (
            sa.select(
                Version.artifact_id.label("artifact_id"),
                sa.func.count().label("n"),
                sa.func.max(Version.version).label("top"),
            )
            .where(Version.artifact_id.in_(chunk), Version.state == COMMITTED)
            .group_by(Version.artifact_id)
            .subquery()
        )
        rows = s.execute(
            sa.select(live.c.artifact_id, live.c.n, live.c.top, Version.size).join(
                Version,
                sa.and_(Version.artifact_id == live.c.artifact_id, Version.version == live.c.top),
            )
        )
        for aid, n, top, size in rows:
            stats[aid] = (n, top, size)
    return stats


def _missing_ref_message(s: Session, project: str, artifact: Artifact, ref: str) -> str:
    where = f"{project}/{artifact.name}"
    live = s.execute(
        sa.select(
            sa.func.count(), sa.func.min(Version.version), sa.func.max(Version.version)
        ).where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
    ).one()
    count, first, last = live
    if not count:
        return (
            f"{where} has no versions left (all were deleted), so {ref!r} does not exist: "
            "log a new version"
        )
    alias_rows = s.execute(
        sa.select(Alias.alias, Version.version)
        .join(Version, Version.id == Alias.version_id)
        .where(Alias.artifact_id == artifact.id)
        .order_by(Alias.alias)
        .limit(_SHOWN + 1)
    ).all()
    aliases = ", ".join(f"{a} (v{n})" for a, n in alias_rows[:_SHOWN])
    if len(alias_rows) > _SHOWN:
        aliases += ", ..."
    what = f"{count} version{'s' if count != 1 else ''} between v{first} and v{last}"
    if count == 1:
        what = f"1 version, v{last}"
    deleted = ""
    if is_version_label(ref):
        state = s.scalar(
            sa.select(Version.state).where(
                Version.artifact_id == artifact.id, Version.version == int(ref[1:])
            )
        )
        if state == DELETED:
            deleted = f" ({ref} was deleted)"
    return (
        f"{where} has no version or alias {ref!r}{deleted}. It has {what} (latest is v{last})"
        + (f"; aliases: {aliases}" if aliases else "; no aliases")
        + ". Use 'latest', a version such as 'v0', an alias or a digest."
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _walk(
    s: Session,
    start: int,
    *,
    upstream: bool,
    depth: int | None,
    depths: dict[str, int],
    edges: set[tuple[str, str]],
) -> None:
    """Breadth-first over lineage edges from version `start`, one query per level.

    Downstream: version -> runs that used it (input edges) -> versions those runs logged
    (output edges) -> ... Upstream follows the same edges backwards. Edges point the way data
    flows (version -> run for inputs, run -> version for outputs)."""
    sign = -1 if upstream else 1
    versions: set[int] = {start}
    runs: set[str] = set()
    level = 0
    while (versions or runs) and (depth is None or level < depth):
        level += 1
        next_versions: set[int] = set()
        next_runs: set[str] = set()
        if versions:
            # from versions: upstream to the runs that logged them, downstream to users
            wanted = OUTPUT if upstream else INPUT
            for chunk in _chunks(sorted(versions)):
                for run_id, vid in s.execute(
                    sa.select(RunArtifact.run_id, RunArtifact.version_id).where(
                        RunArtifact.version_id.in_(chunk), RunArtifact.direction == wanted
                    )
                ):
                    r, v = f"run:{run_id}", f"version:{vid}"
                    edges.add((r, v) if upstream else (v, r))
                    if r not in depths:
                        depths[r] = sign * level
                        next_runs.add(run_id)
        if runs:
            # from runs: upstream to the versions they used, downstream to what they logged
            wanted = INPUT if upstream else OUTPUT
            for run_chunk in _chunks(sorted(runs)):
                for run_id, vid in s.execute(
                    sa.select(RunArtifact.run_id, RunArtifact.version_id).where(
                        RunArtifact.run_id.in_(run_chunk), RunArtifact.direction == wanted
                    )
                ):
                    r, v = f"run:{run_id}", f"version:{vid}"
                    edges.add((v, r) if upstream else (r, v))
                    if v not in depths:
                        depths[v] = sign * level
                        next_versions.add(vid)
        versions, runs = next_versions, next_runs


def _lineage_nodes(s: Session, depths: dict[str, int]) -> list[LineageNode]:
    run_ids = sorted(k[4:] for k in depths if k.startswith("run:"))
    version_ids = sorted(int(k[8:]) for k in depths if k.startswith("version:"))
    nodes: list[LineageNode] = []
    for chunk in _chunks(run_ids):
        for rid, name, job_type, project in s.execute(
            sa.select(Run.id, Run.name, Run.job_type, Project.name)
            .join(Project, Project.id == Run.project_id)
            .where(Run.id.in_(chunk))
        ):
            key = f"run:{rid}"
            nodes.append(LineageNode(key, "run", name, project, job_type, depths[key]))
    for vchunk in _chunks(version_ids):
        for vid, number, name, type_, project in s.execute(
            sa.select(Version.id, Version.version, Artifact.name, Artifact.type, Project.name)
            .join(Artifact, Artifact.id == Version.artifact_id)
            .join(Project, Project.id == Artifact.project_id)
            .where(Version.id.in_(vchunk))
        ):
            key = f"version:{vid}"
            label = f"{name}:v{number}"
            nodes.append(LineageNode(key, "version", label, project, type_, depths[key]))
    return nodes


def open_registry(url: str | None = None) -> SqlRegistry:
    """The registry at `url`, default `cairn.config.database_url()` (a SQLite file under
    CAIRN_DIR, whose directory is created)."""
    url = url or config.database_url()
    db_file = sqlite_path(url)
    if db_file is not None:
        Path(db_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SqlRegistry(url)


def _conforms(registry: SqlRegistry) -> Registry:
    return registry  # mypy checks that SqlRegistry implements the Registry protocol


__all__ = ["SqlRegistry", "open_registry"]
