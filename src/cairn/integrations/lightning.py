"""PyTorch Lightning: log checkpoints, hyperparameters and metrics to Cairn.

    from cairn.integrations.lightning import CairnCallback
    trainer = lightning.Trainer(max_epochs=10, callbacks=[CairnCallback("my-model")])

At the end of every training epoch, the epoch's metrics (``trainer.callback_metrics``: what the
module logged with ``self.log``, validation included) go to the run (step = epoch) and the
checkpoint (``trainer.save_checkpoint``: weights, optimizer state, hyperparameters; or only the
weights with ``weights_only=True``) is logged as a new version of a ``model`` artifact (every
``save_every`` epochs): the newest is ``latest``, and the one with the best ``monitor`` value so
far carries ``best`` (``mode``: "min", "max", or "auto" — "max" for accuracy-like names, else
"min"). Versions are stored as content-defined chunks, so what did not change between two
checkpoints (frozen layers, embeddings) is stored once; ``callback.checkpoints`` records each
one's size and new bytes. The run's config gets the module's hyperparameters
(``save_hyperparameters()``), the datamodule's, and the trainer's settings.

It is a Lightning checkpoint callback: Lightning then adds no ``ModelCheckpoint`` of its own
(add one to keep local files too), and ``callback.best_model_path`` is the best version's
``cairn://`` address, so ``trainer.test(ckpt_path="best")`` reads it from Cairn.

The run is ``cairn.current_run()``; without one, the callback starts a run (job type
"training") when fitting begins and finishes it when fitting ends (failed if it raised). With
several processes, only global rank 0 logs.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import lightning
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint as _LightningCheckpoint

import cairn
from cairn.errors import InvalidInputError
from cairn.integrations._common import Checkpoint, better, jsonable, resolve_mode, scalar
from cairn.sdk.run import Run

_FILE = "model.ckpt"


class CairnCallback(_LightningCheckpoint):  # type: ignore[misc, unused-ignore]
    """Log metrics, hyperparameters and checkpoints of ``trainer.fit`` (see the module
    docstring)."""

    def __init__(
        self,
        name: str = "model",
        *,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_every: int = 1,
        weights_only: bool = False,
        project: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if save_every < 1:
            raise InvalidInputError("save_every must be 1 or more")
        self.artifact_name = name
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.save_every = save_every
        self.weights_only = weights_only
        self.project = project
        self.extra_metadata = dict(metadata or {})
        self.best: float | None = None
        self.best_version: str | None = None
        self.checkpoints: list[Checkpoint] = []
        self.run: Run | None = None
        self._own_run = False

    @property
    def state_key(self) -> str:
        return str(self._generate_state_key(name=self.artifact_name, monitor=self.monitor))

    @property
    def best_model_path(self) -> str:
        """The best version's checkpoint as a ``cairn://`` address ("" before there is one)."""
        if self.run is None or self.best_version is None:
            return ""
        return f"cairn://{self.run.project}/{self.artifact_name}:{self.best_version}/{_FILE}"

    # --- run ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        run = cairn.current_run()
        if run is None or run.state != "running":
            run = cairn.init(project=self.project, job_type="training")
            self._own_run = True
        self.run = run
        for key, value in _config(trainer, pl_module).items():
            run.config.setdefault(key, value)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._own_run and self.run is not None:
            self.run.finish()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if self._own_run and self.run is not None:
            self.run.finish(1, failure=f"{type(exception).__name__}: {exception}")

    # --- epochs ------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # as a checkpoint callback, this runs after LightningModule.on_train_epoch_end, so what
        # the module logs there is seen too
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        metrics = {
            k: f for k, v in trainer.callback_metrics.items() if (f := scalar(v)) is not None
        }
        improved = better(metrics.get(self.monitor), self.best, self.mode)
        save = (epoch + 1) % self.save_every == 0 or improved
        # every process takes rank 0's decision: saving a checkpoint is a collective call
        save, improved = trainer.strategy.broadcast((save, improved))
        if trainer.is_global_zero:
            assert self.run is not None
            self.run.log({**metrics, "epoch": epoch}, step=epoch)
            if improved:
                self.best = metrics[self.monitor]
        if save:
            self._save(trainer, epoch, metrics, improved)

    def _save(self, trainer: Trainer, epoch: int, metrics: dict[str, float], best: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="cairn-lightning-") as folder:
            path = os.path.join(folder, _FILE)
            trainer.save_checkpoint(path, weights_only=self.weights_only)
            if not trainer.is_global_zero:
                return
            assert self.run is not None
            art = cairn.Artifact(
                self.artifact_name,
                "model",
                metadata={
                    **self.extra_metadata,
                    "epoch": epoch,
                    "global_step": trainer.global_step,
                    "framework": f"lightning {lightning.__version__} (torch {torch.__version__})",
                    "monitor": self.monitor,
                    **metrics,
                },
            )
            art.add_file(path)
            self.run.log_artifact(art, aliases=["best"] if best else [])
        if best:
            self.best_version = art.version
        stats = art.stats
        self.checkpoints.append(
            Checkpoint(
                epoch, art.version, art.size, int(stats.new_bytes), best, trainer.global_step
            )
        )

    # --- resuming from a Lightning checkpoint keeps the best score so far ------------------
    def state_dict(self) -> dict[str, Any]:
        # the best score only: a checkpoint is written before its own version number is known
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if (state_dict.get("monitor"), state_dict.get("mode")) == (self.monitor, self.mode):
            self.best = state_dict.get("best")


def _config(trainer: Trainer, module: LightningModule) -> dict[str, Any]:
    """The module's and datamodule's hyperparameters, then what the trainer says of the run."""
    config: dict[str, Any] = {}
    datamodule = getattr(trainer, "datamodule", None)
    for source in (datamodule, module):
        hparams = getattr(source, "hparams", None)
        if hparams:
            config.update({str(k): jsonable(v) for k, v in dict(hparams).items()})
    params = list(module.parameters())
    facts: dict[str, Any] = {
        "model": type(module).__name__,
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "max_epochs": trainer.max_epochs,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "precision": str(trainer.precision),
        "devices": trainer.num_devices,
        "framework": f"lightning {lightning.__version__} (torch {torch.__version__})",
    }
    optimizers = getattr(trainer, "optimizers", None) or []
    if optimizers:
        facts["optimizer"] = type(optimizers[0]).__name__
        lr = scalar(optimizers[0].param_groups[0].get("lr"))
        if lr is not None:
            facts["learning_rate"] = lr
    for key, value in facts.items():
        if value is not None:
            config.setdefault(key, value)
    return config


__all__ = ["CairnCallback", "Checkpoint"]
