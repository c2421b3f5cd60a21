"""The PyTorch Lightning callback (CPU build of PyTorch): a tiny model trained for two epochs
logs its hyperparameters, metrics and a checkpoint per epoch, `best` on the best, successive
checkpoints share their unchanged chunks, and `trainer.test(ckpt_path="best")` reads the best
checkpoint back through cairn://.

PyTorch comes from the CPU wheel scripts/setup.sh installs; without it these tests fail under
CAIRN_REQUIRE_ALL=1 (CI) and skip otherwise."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

import cairn
from unprivileged import require

HAVE_LIGHTNING = find_spec("torch") is not None and find_spec("lightning") is not None

pytestmark = pytest.mark.filterwarnings(
    # a DataLoader without worker processes is what a test of this size wants
    "ignore:.*does not have many workers:UserWarning",
    # Lightning 2.6 on PyTorch 2.13 (theirs, not Cairn's)
    "ignore:.*LeafSpec.* is deprecated:FutureWarning",
)


@pytest.fixture(autouse=True)
def _needs_lightning() -> None:
    require(
        HAVE_LIGHTNING,
        "torch and lightning are not installed (scripts/setup.sh installs PyTorch's CPU wheel "
        "from /opt/wheels, then the lightning-test extra)",
    )


if HAVE_LIGHTNING:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from cairn.integrations.lightning import CairnCallback

    class Tiny(L.LightningModule):
        """A frozen 1024x1024 layer (4 MiB that never change) under a small trainable head."""

        def __init__(self, lr: float = 0.05, hidden: int = 8, scores: tuple[float, ...] = ()):
            super().__init__()
            self.save_hyperparameters()
            self.frozen = torch.nn.Linear(1024, 1024)
            self.frozen.requires_grad_(False)
            self.head = torch.nn.Sequential(
                torch.nn.Linear(1024, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.frozen(x))

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

        def test_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))

        def on_train_epoch_end(self) -> None:
            if self.hparams.scores:  # a metric logged here, after the epoch's hooks
                self.log("score", self.hparams.scores[self.current_epoch])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.head.parameters(), lr=self.hparams.lr)


def _data() -> tuple[DataLoader[Any], DataLoader[Any]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1024, generator=gen)
    y = x[:, :1] * 2
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
    return train, val


def _trainer(callback: CairnCallback) -> L.Trainer:
    return L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


@pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])
def test_two_epochs_log_checkpoints_metrics_and_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    callback = CairnCallback("tiny", monitor="val_loss")
    train, val = _data()
    with cairn.init(project="lt", job_type="train") as run:
        _trainer(callback).fit(Tiny(lr=0.05, hidden=8), train, val)
        rows = run.metrics()
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {"train_loss", "val_loss"} <= set(rows[0])
    stored = cairn.Api("lt").run(run.id)
    assert stored.job_type == "train"  # the callback used the active run
    assert stored.config["lr"] == 0.05 and stored.config["hidden"] == 8  # save_hyperparameters
    assert stored.config["max_epochs"] == 2 and stored.config["optimizer"] == "SGD"
    assert stored.config["parameters"] > 1024 * 1024 > stored.config["trainable_parameters"]

    api = cairn.Api("lt")
    assert sorted(v.version for v in api.artifact_versions("tiny")) == ["v0", "v1"]
    latest = api.artifact("tiny:latest")
    assert latest.version == "v1" and latest.type == "model"
    assert latest.metadata["epoch"] == 1 and latest.metadata["monitor"] == "val_loss"
    assert latest.metadata["val_loss"] == pytest.approx(rows[1]["val_loss"])
    losses = [r["val_loss"] for r in rows]
    best = api.artifact("tiny:best")
    assert best.version == f"v{losses.index(min(losses))}"
    assert [a.qualified_name for a in run.logged_artifacts()] == ["lt/tiny:v0", "lt/tiny:v1"]
    producer = latest.logged_by()
    assert producer is not None and producer.id == run.id

    # the checkpoint loads back, and the second stored far less than its size (frozen layer)
    path = Path(latest.download(tmp_path / "dl")) / "model.ckpt"
    restored = Tiny.load_from_checkpoint(path)
    assert restored.hparams.hidden == 8
    first, second = callback.checkpoints
    assert first.new_bytes >= first.size * 0.9
    assert second.size > 4 * 2**20 and second.reused > 0.5, second


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_starts_a_run_and_best_is_read_back_from_cairn() -> None:
    """Without a run the callback starts and finishes one; `best` follows the monitored value
    (here one the module logs in its own on_train_epoch_end), and trainer.test(ckpt_path="best")
    loads that version's weights through cairn://."""
    torch.manual_seed(0)
    callback = CairnCallback("scored", monitor="score", mode="max", project="lt2")
    train, val = _data()
    model = Tiny(scores=(0.9, 0.5))
    weights: list[torch.Tensor] = []

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            weights.append(module.head[0].weight.detach().clone())

    trainer = _trainer(callback)
    trainer.callbacks.insert(0, Snapshot())
    trainer.fit(model, train, val)
    assert cairn.current_run() is None or cairn.current_run() is not callback.run
    assert callback.run is not None
    stored = cairn.Api("lt2").run(callback.run.id)
    assert stored.state == "finished" and stored.job_type == "training"

    api = cairn.Api("lt2")
    assert api.artifact("scored:latest").version == "v1"
    assert api.artifact("scored:best").version == "v0"
    assert [c.best for c in callback.checkpoints] == [True, False]
    assert callback.best_model_path == "cairn://lt2/scored:v0/model.ckpt"
    assert not torch.equal(weights[0], weights[1])

    trainer.test(model, val, ckpt_path="best", verbose=False)
    assert torch.equal(model.head[0].weight, weights[0])


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_resuming_keeps_the_best_score_and_a_failing_fit_fails_the_run(tmp_path: Path) -> None:
    train, val = _data()
    first = CairnCallback("resumed", monitor="score", mode="max", project="lt3")
    trainer = _trainer(first)
    trainer.fit(Tiny(scores=(0.9, 0.5, 0.7)), train, val)
    assert first.best == pytest.approx(0.9)

    # resumed from the logged v1 for a third epoch: 0.7 is not better than the 0.9 of epoch 0
    path = cairn.Api("lt3").artifact("resumed:v1").download(tmp_path / "v1")
    again = CairnCallback("resumed", monitor="score", mode="max", project="lt3")
    more = _trainer(again)
    more.fit_loop.max_epochs = 3
    more.fit(Tiny(scores=(0.9, 0.5, 0.7)), train, val, ckpt_path=Path(path) / "model.ckpt")
    assert [c.best for c in again.checkpoints] == [False]
    assert cairn.Api("lt3").artifact("resumed:best").version == "v0"
    assert cairn.Api("lt3").artifact("resumed:latest").version == "v2"

    class Broken(Tiny):
        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            raise ValueError("bad batch")

    failing = CairnCallback("broken", project="lt3")
    with pytest.raises(ValueError, match="bad batch"):
        _trainer(failing).fit(Broken(), train, val)
    assert failing.run is not None
    stored = cairn.Api("lt3").run(failing.run.id)
    assert stored.state == "failed" and "bad batch" in (stored.failure or "")
