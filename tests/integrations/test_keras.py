"""The Keras 3 callback (JAX backend, CPU): a tiny model trained for two epochs logs its
config, metrics and a checkpoint per epoch, `best` on the best, and successive checkpoints
share their unchanged chunks."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from pathlib import Path

import keras
import numpy as np
import pytest

import cairn
from cairn.integrations.keras import CairnCallback


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    frozen = keras.layers.Dense(1024, name="frozen")  # 2 MiB of weights that never change
    frozen.trainable = False
    model = keras.Sequential(
        [
            keras.Input((1024,)),
            frozen,
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
    return model


@pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])
def test_two_epochs_log_checkpoints_metrics_and_config(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 1024)).astype("float32")
    y = x[:, :1] * 2
    callback = CairnCallback("tiny", monitor="val_loss")
    with cairn.init(project="kr", job_type="train") as run:
        _model().fit(
            x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0
        )
        rows = run.metrics()
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {"loss", "val_loss", "mae", "val_mae"} <= set(rows[0])
    stored = cairn.Api("kr").run(run.id)
    assert stored.config["epochs"] == 2 and stored.config["optimizer"] == "SGD"
    assert stored.config["parameters"] > 1024 * 1024

    versions = cairn.Api("kr").artifact_versions("tiny")
    assert sorted(v.version for v in versions) == ["v0", "v1"]
    latest = cairn.Api("kr").artifact("tiny:latest")
    assert latest.version == "v1" and latest.metadata["epoch"] == 1
    best = cairn.Api("kr").artifact("tiny:best")
    losses = [r["val_loss"] for r in rows]
    assert best.version == f"v{losses.index(min(losses))}"
    assert [a.qualified_name for a in run.logged_artifacts()] == ["kr/tiny:v0", "kr/tiny:v1"]

    # the checkpoint loads back, and the second stored far less than its size
    restored = keras.models.load_model(Path(latest.download(tmp_path / "dl")) / "model.keras")
    assert restored.count_params() == stored.config["parameters"]
    first, second = callback.checkpoints
    assert first.new_bytes >= first.size * 0.9
    assert second.reused > 0.5, second
