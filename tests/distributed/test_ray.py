"""`cairn.distributed` on a real local Ray cluster (two CPUs: two worker processes), embedded
and through a server whose store is an S3 bucket (the workers upload on signed URLs). One
cluster for the module: starting Ray takes seconds."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require
from tests.distributed import engine_cases

pytestmark = pytest.mark.parametrize("backend_mode", ["sqlite", "postgres", "remote-bucket"])
RAY = {"engine": "ray"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    require(
        importlib.util.find_spec("ray") is not None,
        "ray is not installed (pip install 'cairn[ray]')",
    )
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        namespace="cairn-tests",
    )
    yield
    ray.shutdown()


def test_log_dir_on_ray_equals_one_process(tmp_path: Path, ray_cluster: None) -> None:
    engine_cases.log_dir_equals_single_process(tmp_path, RAY)


def test_files_and_references_on_ray(tmp_path: Path, ray_cluster: None) -> None:
    engine_cases.files_and_references(tmp_path, RAY)


def test_many_shards_on_ray_are_cut_as_they_are_wanted(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_cases.many_shards_are_cut_as_the_engine_asks(tmp_path, RAY, monkeypatch)


def test_conflicting_paths_on_ray(tmp_path: Path, ray_cluster: None) -> None:
    engine_cases.conflicting_paths_are_named(tmp_path, RAY)


def test_push_inside_a_process_in_a_ray_cluster_cannot_pick_another(
    tmp_path: Path, ray_cluster: None
) -> None:
    from typer.testing import CliRunner

    from cairn.cli.main import app

    folder = engine_cases.make_folder(tmp_path)
    result = CliRunner().invoke(app, ["push", str(folder), "--ray", "local"])
    assert result.exit_code == 2
    assert "Ray is already initialised in this process" in result.output
    import ray

    assert ray.is_initialized()  # the module's cluster is left as it was
