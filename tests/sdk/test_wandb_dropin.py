"""`import cairn.wandb as wandb`: a W&B artifact script runs unchanged (examples/wandb_style.py
is executed here, on every SDK mode), the WANDB_* variables mean what they mean in W&B, and
what Cairn does not have says so."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from sdk_helpers import tree_of, write

import cairn
import cairn.wandb as wandb
from cairn.errors import InvalidMetadataError, RunFinishedError, UnsupportedError

EXAMPLE = Path(__file__).parents[2] / "examples" / "wandb_style.py"


def test_the_example_script_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(tmp_path / "work")])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {
        "model": "line-model:v0",
        "w": pytest.approx(3.0, abs=0.15),
        "b": pytest.approx(0.5, abs=0.1),
        "trained_by": "train",
        "dataset_versions": ["v0"],
        "inputs": ["points"],
    }
    api = cairn.Api("wandb-style")
    points = api.artifact("points:raw")
    assert points.metadata == {"rows": 200, "columns": ["x", "y"], "noise": pytest.approx(0.1)}
    assert sorted(points.aliases) == ["latest", "raw"]
    train = points.used_by()[0]
    assert train.config == {"lr": 0.5, "epochs": 40, "optimizer": "gd"}
    assert points.logged_by().config == {"rows": 200, "seed": 7}  # type: ignore[union-attr]
    assert train.summary["w"] == pytest.approx(3.0, abs=0.15)
    losses = [m["loss"] for m in train.metrics()]
    assert len(losses) == 40 and losses[-1] < losses[0]
    assert wandb.run is None


def test_init_run_log_summary_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    run = wandb.init(entity="ignored", config={"a": 1}, job_type="eval", group="g1", tags=["t"])
    assert wandb.run is run and run.project == "from-env" and run.job_type == "eval"
    wandb.config["b"] = 2
    wandb.log({"acc": np.float32(0.5), "hist": np.arange(3)})
    wandb.summary["best"] = 0.9
    art = wandb.Artifact("ds", type="dataset")
    art.add_file(str(write(tmp_path / "a.txt", "a")))
    wandb.log_artifact(art, aliases=["latest", "best"])
    used = wandb.use_artifact("team/from-env/ds:best")
    assert used.version == "v0"
    wandb.finish()
    assert wandb.run is None
    stored = cairn.Api("from-env").run(run.id)
    assert stored.state == "finished" and stored.config == {"a": 1, "b": 2}
    assert stored.summary["best"] == 0.9 and stored.info.tags == ["t", "group-g1"]
    assert stored.metrics() == [{"_step": 0, "acc": 0.5, "hist": [0, 1, 2]}]
    with pytest.raises(RunFinishedError, match=r"wandb\.init"):
        wandb.log({"x": 1})


def test_config_reads_and_writes_as_attributes() -> None:
    run = wandb.init(project="proj", config={"lr": 0.01, "layers": (64, 32)})
    config = wandb.config
    assert config.lr == 0.01 and config["layers"] == [64, 32]
    wandb.config.batch_size = 32
    wandb.config.update({"epochs": np.int64(3), "opt": {"name": "adam"}})
    wandb.config.update(argparse.Namespace(lr=0.1, seed=7), allow_val_change=True)
    config.setdefaults({"epochs": 99, "dropout": np.float32(0.5)})
    config.setdefault("warmup", 2)
    config.tmp = "x"
    del config.tmp
    assert (config.lr, config.batch_size, config.epochs, config.dropout) == (0.1, 32, 3, 0.5)
    assert type(config.epochs) is int and config.opt == {"name": "adam"}
    assert run.config is config and config.as_dict() == dict(config)
    with pytest.raises(AttributeError, match="no key 'nope'"):
        config.nope  # noqa: B018
    assert getattr(config, "nope", None) is None and not hasattr(config, "nope")
    # a bad value is refused where it is set, and a bad update changes nothing
    with pytest.raises(InvalidMetadataError, match=r"config\['bad'\] is a set"):
        config.bad = {1, 2}
    with pytest.raises(InvalidMetadataError, match=r"config\['loss'\] is nan"):
        config.update({"ok": 1, "loss": float("nan")})
    with pytest.raises(InvalidMetadataError, match="not int"):
        config.update({1: "int key"})
    assert "ok" not in config and "bad" not in config
    wandb.finish()
    expected = {
        "lr": 0.1,
        "layers": [64, 32],
        "batch_size": 32,
        "epochs": 3,
        "opt": {"name": "adam"},
        "seed": 7,
        "dropout": 0.5,
        "warmup": 2,
    }
    stored = wandb.Api().run(f"team/proj/{run.id}")
    assert stored.config == expected and list(stored.config) == list(expected)
    assert stored.config.batch_size == 32 and stored.info.config == expected
    # init takes an argparse Namespace as W&B does; a value it cannot keep is refused there
    with wandb.init(project="proj", config=argparse.Namespace(lr=0.2)) as other:
        assert wandb.config.lr == 0.2
    assert cairn.Api("proj").run(other.id).config == {"lr": 0.2}
    with pytest.raises(InvalidMetadataError, match=r"config\['f'\] is a function"):
        wandb.init(project="proj", config={"f": lambda: 1})
    assert wandb.run is None


def test_the_api_with_entity_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    with wandb.init() as run:
        for i in range(2):
            art = wandb.Artifact("model", type="model")
            art.add_file(str(write(tmp_path / f"m{i}.bin", f"m{i}")), name="m.bin")
            run.log_artifact(art, tags=["even"] if i == 0 else None)
    api = wandb.Api()
    assert api.artifact("ent/proj/model:v1").version == "v1"
    assert api.artifact("model:latest").version == "v1"
    assert [a.version for a in api.artifact_versions("model", "ent/proj/model")] == ["v1", "v0"]
    assert api.artifact_versions("dataset", "ent/proj/model") == []
    assert [a.version for a in api.artifact_versions("model", "proj/model", tags=["even"])] == [
        "v0"
    ]
    assert api.artifact_exists("ent/proj/model:v0") and not api.artifact_exists("ent/proj/x")
    assert api.artifact_collection_exists("ent/proj/model", type="model")
    collection = api.artifact_collection("model", "ent/proj/model")
    assert collection.version_count == 2
    assert api.run(f"ent/proj/{run.id}").id == run.id
    assert wandb.Api(overrides={"project": "other"}).default_project == "other"


def test_offline_mode_and_wandb_dir_and_artifact_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CAIRN_DIR", "CAIRN_ARTIFACT_DIR"):
        monkeypatch.delenv(name, raising=False)
    # set (not deleted) so that the CAIRN_OFFLINE=1 wandb.init sets is undone after the test
    monkeypatch.setenv("CAIRN_OFFLINE", "0")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_ARTIFACT_DIR", str(tmp_path / "wandb-artifacts"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("CAIRN_DATABASE_URL", f"sqlite:///{tmp_path / 'offline.db'}")
    run = wandb.init(project="offline")
    art = wandb.Artifact("ds", type="dataset")
    art.add_file(str(write(tmp_path / "a.txt", "a")))
    run.log_artifact(art)
    wandb.finish()
    # the embedded store, under WANDB_DIR, whatever CAIRN_URL says
    assert type(cairn.sdk.backend.get_backend()._here()).__name__ == "EmbeddedBackend"  # type: ignore[attr-defined]
    assert (tmp_path / "wandb-dir" / "cairn" / "store").is_dir()
    path = art.download()
    assert path == str(tmp_path / "wandb-artifacts" / "ds:v0")
    assert tree_of(path) == {"a.txt": b"a"}
    monkeypatch.setenv("CAIRN_ARTIFACT_DIR", str(tmp_path / "cairn-wins"))
    assert art.download() == str(tmp_path / "cairn-wins" / "ds:v0")


def test_what_cairn_does_not_have_says_so() -> None:
    for make in (
        lambda: wandb.Image("x.png"),
        lambda: wandb.Table(columns=["a"]),
        lambda: wandb.Histogram([1, 2]),
        lambda: wandb.sweep({"method": "grid"}),
        lambda: wandb.agent("sweep-id"),
        lambda: wandb.Api().sweep("e/p/s"),
        lambda: wandb.init(resume="allow"),
        lambda: wandb.init(mode="disabled"),
    ):
        with pytest.raises(UnsupportedError, match="not supported"):
            make()
    with pytest.raises(AttributeError, match="not supported"):
        wandb.plot  # noqa: B018
    assert issubclass(UnsupportedError, NotImplementedError)
