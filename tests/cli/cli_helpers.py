"""Helpers shared by the CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

import cairn
from cairn.sdk.backend import reset_backends

Invoke = Callable[..., Result]


def make_files(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def log_with_sdk(
    project: str,
    path: Path,
    name: str,
    *,
    job_type: str = "create",
    uses: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    type: str = "dataset",
    metadata: dict[str, Any] | None = None,
) -> cairn.Artifact:
    """Log a folder as `name` from a run that uses `uses`, through the SDK."""
    reset_backends()
    with cairn.init(project=project, job_type=job_type) as run:
        for ref in uses:
            run.use_artifact(ref)
        art = cairn.Artifact(name, type=type, metadata=metadata)
        art.add_dir(path)
        run.log_artifact(art, aliases=list(aliases))
    return art


def seed_store(src: Path) -> None:
    """Project "demo":

    - data v0 (alias stable, rows=2) and v1 (rows=3), each logged by a "create" run;
    - model v0 (type model), logged by a "training" run that used data:v1;
    - report v0 (type evaluation), logged by an "evaluation" run that used model:v0 and
      data:stable.
    """
    data = make_files(src / "data", {"a.csv": "1\n", "sub/b.csv": "22\n"})
    log_with_sdk("demo", data, "data", aliases=("stable",), metadata={"rows": 2})
    (data / "c.csv").write_text("333\n")
    log_with_sdk("demo", data, "data", metadata={"rows": 3})
    model = make_files(src / "model", {"w.bin": "weights"})
    log_with_sdk("demo", model, "model", job_type="training", uses=("data:v1",), type="model")
    report = make_files(src / "report", {"metrics.json": "{}"})
    log_with_sdk(
        "demo",
        report,
        "report",
        job_type="evaluation",
        uses=("model:v0", "data:stable"),
        type="evaluation",
    )
