"""A drop-in for W&B artifact scripts: ``import cairn.wandb as wandb``.

A script that versions data with W&B's public SDK (``wandb.init``, ``wandb.Artifact``,
``run.log_artifact``, ``run.use_artifact``, ``wandb.Api().artifact(...)``) runs unchanged on
Cairn: runs, metrics, config, summary and artifacts go to the Cairn store the environment names
(``CAIRN_URL`` for a server, else the embedded store). What maps to what is in docs/wandb.md.

- ``entity`` is accepted and ignored (Cairn has projects, no entities); in a path such as
  ``"entity/project/name:alias"`` the entity is skipped.
- ``mode="offline"`` (or ``WANDB_MODE=offline``) uses the embedded store even when a server
  is configured; ``"online"`` uses what the environment names; ``"disabled"`` is refused.
- ``WANDB_PROJECT`` is the default project (after ``project=``), ``WANDB_DIR`` (or
  ``dir=``) the embedded store's folder when ``CAIRN_DIR`` is not set, and
  ``WANDB_ARTIFACT_DIR`` the default download folder when ``CAIRN_ARTIFACT_DIR`` is not set.
- Media types, Tables, sweeps, alerts, the hosted UI and other W&B features Cairn does not have
  raise `UnsupportedError` saying so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cairn import config as _config
from cairn.core import names as _names
from cairn.errors import InvalidInputError, RunFinishedError, UnsupportedError
from cairn.sdk import run as _run_module
from cairn.sdk.api import Api as _Api
from cairn.sdk.api import ArtifactCollection
from cairn.sdk.artifact import Artifact, ArtifactFile
from cairn.sdk.metadata import convert
from cairn.sdk.run import Run
from cairn.sdk.run_config import Config, to_config

__all__ = [
    "Api",
    "Artifact",
    "ArtifactCollection",
    "ArtifactFile",
    "Config",
    "Run",
    "UnsupportedError",
    "finish",
    "init",
    "log",
    "log_artifact",
    "use_artifact",
]


_MODES = ("online", "offline", "dryrun", "run")


def _mode(mode: str | None) -> str:
    chosen = mode or os.environ.get("WANDB_MODE") or "online"
    if chosen == "disabled":
        raise UnsupportedError(
            "mode='disabled' is not supported by cairn.wandb: Cairn always records the run; "
            "use mode='offline' to keep it in the local embedded store"
        )
    if chosen not in _MODES:
        raise InvalidInputError(f"unknown mode {chosen!r}: use 'online' or 'offline'")
    return "offline" if chosen in ("offline", "dryrun") else "online"


def _apply_environment(mode: str | None = None, dir: str | os.PathLike[str] | None = None) -> None:
    """Map the WANDB_* variables (and init's mode/dir) onto Cairn's settings."""
    if _mode(mode) == "offline":
        os.environ[_config.CAIRN_OFFLINE] = "1"
    folder = os.fspath(dir) if dir is not None else os.environ.get("WANDB_DIR")
    if folder and not _config.cairn_dir_set():
        os.environ[_config.CAIRN_DIR] = str(Path(folder).expanduser().absolute() / "cairn")


if "WANDB_ARTIFACT_DIR" not in _config.ARTIFACT_DIR_VARIABLES:
    _config.ARTIFACT_DIR_VARIABLES.append("WANDB_ARTIFACT_DIR")


def _default_project() -> str | None:
    return os.environ.get("WANDB_PROJECT") or _config.default_project()


def init(
    project: str | None = None,
    entity: str | None = None,
    config: Any = None,
    job_type: str | None = None,
    name: str | None = None,
    notes: str | None = None,
    tags: Sequence[str] | None = None,
    mode: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    save_code: bool | None = None,
    reinit: Any = None,
    group: str | None = None,
    **unsupported: Any,
) -> Run:
    """``wandb.init(...)``: start a run (see the module docstring for what each argument
    means here). ``group`` is recorded as a tag ``group-<name>``."""
    if unsupported:
        raise UnsupportedError(
            f"wandb.init({', '.join(sorted(unsupported))}=...) is not supported by cairn.wandb; "
            "supported: project, entity (ignored), config, job_type, name, notes, tags, mode, "
            "dir, save_code, reinit, group"
        )
    _apply_environment(mode, dir)
    all_tags = list(tags or [])
    if group:
        all_tags.append(f"group-{group}")
    return _run_module.init(
        project=project or _default_project(),
        job_type=job_type,
        name=name,
        config=dict(to_config(config)),
        tags=all_tags,
        notes=notes or "",
        save_code=True if save_code is None else save_code,
    )


def _current() -> Run:
    run = _run_module.current_run()
    if run is None:
        raise RunFinishedError("no active run; call wandb.init() first")
    return run


def log(data: dict[str, Any], step: int | None = None, commit: bool = True) -> None:
    """``wandb.log(...)`` on the current run: numbers and JSON values (numpy scalars and
    arrays converted); media types are not supported."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"wandb.log takes a dict, not {type(data).__name__}")
    row = {k: convert(v, f"logged metrics[{k!r}]") for k, v in data.items()}
    _current().log(row, step=step, commit=commit)


def log_artifact(
    artifact: Artifact | str | os.PathLike[str],
    name: str | None = None,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> Artifact:
    return _current().log_artifact(artifact, name, type, aliases, tags)


def use_artifact(artifact: str | Artifact, type: str | None = None) -> Artifact:
    return _current().use_artifact(_strip_entity(artifact), type)


def finish(exit_code: int = 0, quiet: bool | None = None) -> None:
    _run_module.finish(exit_code)


def _strip_entity(ref: str | Artifact) -> str | Artifact:
    """``entity/project/name:alias`` -> ``project/name:alias`` (Cairn has no entities)."""
    if isinstance(ref, str) and ref.count("/") == 2:
        return ref.split("/", 1)[1]
    return ref


class Api(_Api):
    """``wandb.Api()``: paths may start with an entity (ignored); the default project is
    ``WANDB_PROJECT`` (then ``CAIRN_PROJECT``)."""

    def __init__(
        self,
        overrides: dict[str, Any] | None = None,
        timeout: int | None = None,
        api_key: str | None = None,
    ) -> None:
        _apply_environment()
        project = (overrides or {}).get("project") or _default_project()
        super().__init__(project)

    def artifact(
        self, name: str, type: str | None = None, *, at: datetime | None = None
    ) -> Artifact:
        ref = _strip_entity(name)
        assert isinstance(ref, str)
        return super().artifact(ref, type, at=at)

    def artifact_versions(  # type: ignore[override]
        self,
        type_name: str,
        name: str,
        per_page: int = 50,
        order: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[Artifact]:
        """W&B's ``artifact_versions(type_name, "entity/project/name")``: live versions."""
        ref = _strip_entity(name)
        assert isinstance(ref, str)
        parsed = _names.parse_ref(ref)
        versions = super().artifact_versions(
            parsed.name, project=parsed.project, limit=10_000, order=order or "-version", tags=tags
        )
        return [v for v in versions if v.type == type_name]

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        ref = _strip_entity(name)
        assert isinstance(ref, str)
        return super().artifact_exists(ref, type)

    def artifact_collection_exists(self, name: str, type: str | None = None) -> bool:
        ref = _strip_entity(name)
        assert isinstance(ref, str)
        return super().artifact_collection_exists(ref, type)

    def artifact_collection(  # type: ignore[override]
        self, type_name: str, name: str
    ) -> ArtifactCollection:
        """W&B's ``artifact_collection(type_name, "entity/project/name")``."""
        ref = _strip_entity(name)
        assert isinstance(ref, str)
        return super().artifact_collection(ref, type=type_name)

    def run(self, path: str) -> Run:
        """``api.run("entity/project/run_id")`` (or just the run id)."""
        return super().run(path.rsplit("/", 1)[-1])

    def sweep(self, path: str) -> Any:
        raise _unsupported("sweeps")


class _Unsupported:
    """A W&B class Cairn does not have: making one raises UnsupportedError."""

    what = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _unsupported(self.what)


def _unsupported(what: str) -> UnsupportedError:
    return UnsupportedError(
        f"{what} are not supported by cairn.wandb: Cairn versions data and records lineage, "
        "metrics and config; see docs/wandb.md for what maps to what"
    )


def _media(name: str, what: str) -> type[_Unsupported]:
    return type(name, (_Unsupported,), {"what": what, "__doc__": f"Not supported: {what}."})


Image = _media("Image", "media types (wandb.Image)")
Audio = _media("Audio", "media types (wandb.Audio)")
Video = _media("Video", "media types (wandb.Video)")
Html = _media("Html", "media types (wandb.Html)")
Histogram = _media("Histogram", "media types (wandb.Histogram)")
Object3D = _media("Object3D", "media types (wandb.Object3D)")
Molecule = _media("Molecule", "media types (wandb.Molecule)")
Plotly = _media("Plotly", "media types (wandb.Plotly)")
Table = _media("Table", "Tables (wandb.Table)")
AlertLevel = _media("AlertLevel", "alerts (wandb.alert)")


def sweep(*args: Any, **kwargs: Any) -> Any:
    raise _unsupported("sweeps (wandb.sweep)")


def agent(*args: Any, **kwargs: Any) -> Any:
    raise _unsupported("sweeps (wandb.agent)")


def alert(*args: Any, **kwargs: Any) -> Any:
    raise _unsupported("alerts (wandb.alert)")


def watch(*args: Any, **kwargs: Any) -> Any:
    raise _unsupported("model watching (wandb.watch)")


def login(*args: Any, **kwargs: Any) -> bool:
    """Accepted for compatibility: Cairn's login is `cairn login` (or CAIRN_URL and
    CAIRN_API_KEY); nothing to do here."""
    return True


def save(*args: Any, **kwargs: Any) -> Any:
    raise _unsupported("run files (wandb.save); log them in an artifact instead")


def define_metric(*args: Any, **kwargs: Any) -> None:
    """Accepted and ignored (Cairn keeps every logged value; the summary holds the latest)."""
    return None


def __getattr__(name: str) -> Any:
    """``wandb.run``, ``wandb.config`` and ``wandb.summary`` follow the current run."""
    if name == "run":
        return _run_module.current_run()
    if name in ("config", "summary"):
        return getattr(_current(), name)
    raise AttributeError(
        f"cairn.wandb has no {name!r}: it is not supported (see docs/wandb.md for what maps "
        "to what)"
    )
