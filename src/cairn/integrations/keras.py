"""Keras 3 (any backend: JAX, TensorFlow, PyTorch): log checkpoints, config and metrics to Cairn.

    from cairn.integrations.keras import CairnCallback
    model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[CairnCallback("my-model")])

Each epoch's metrics go to the run (step = epoch). The model is saved after every epoch (or
every ``save_every`` epochs) as a new version of a ``model`` artifact: the newest is ``latest``,
and the one with the best ``monitor`` value so far carries ``best`` (``mode``: "min", "max", or
"auto" — "max" for accuracy-like names, else "min"). Versions are stored as content-defined
chunks, so what did not change between two checkpoints (frozen layers, the architecture) is
stored once; ``callback.checkpoints`` records each one's size and new bytes.

The run is ``cairn.current_run()``; without one, the callback starts a run (job type
"training") when training begins and finishes it when training ends.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import keras

import cairn
from cairn.errors import InvalidInputError
from cairn.sdk.run import Run


@dataclass
class Checkpoint:
    """One logged checkpoint: its version, size and the bytes it added to the store."""

    epoch: int
    version: str
    size: int
    new_bytes: int
    best: bool

    @property
    def reused(self) -> float:
        """The share of its bytes already stored (0..1)."""
        return 1 - self.new_bytes / self.size if self.size else 1.0


def _mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise InvalidInputError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) else "min"


class CairnCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Log metrics, config and checkpoints of ``model.fit`` (see the module docstring)."""

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
        self.mode = _mode(monitor, mode)
        self.save_every = save_every
        self.weights_only = weights_only
        self.project = project
        self.extra_metadata = dict(metadata or {})
        self.best: float | None = None
        self.checkpoints: list[Checkpoint] = []
        self.run: Run | None = None
        self._own_run = False

    # --- run ---------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = cairn.current_run()
        if run is None or run.state != "running":
            run = cairn.init(project=self.project, job_type="training")
            self._own_run = True
        self.run = run
        model = self.model
        config: dict[str, Any] = {
            "model": model.name,
            "parameters": int(model.count_params()),
            "keras_backend": keras.backend.backend(),
        }
        for key in ("epochs", "batch_size", "steps"):
            if self.params.get(key) is not None:
                config[key] = self.params[key]
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            config["optimizer"] = type(optimizer).__name__
            try:
                with warnings.catch_warnings():  # keras's Variable.__array__ vs NumPy 2
                    warnings.simplefilter("ignore", DeprecationWarning)
                    config["learning_rate"] = float(optimizer.get_config()["learning_rate"])
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
        for key, value in config.items():
            run.config.setdefault(key, value)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._own_run and self.run is not None:
            self.run.finish()

    # --- epochs ------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self.run is not None
        metrics = {k: f for k, v in (logs or {}).items() if (f := _float(v)) is not None}
        self.run.log({**metrics, "epoch": epoch}, step=epoch)
        value = metrics.get(self.monitor)
        improved = value is not None and math.isfinite(value) and self._better(value)
        if improved:
            self.best = value
        if (epoch + 1) % self.save_every == 0 or improved:
            self._save(epoch, metrics, improved)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _save(self, epoch: int, metrics: dict[str, float], best: bool) -> None:
        assert self.run is not None
        with tempfile.TemporaryDirectory(prefix="cairn-keras-") as folder:
            with warnings.catch_warnings():  # keras's __array__ under NumPy 2 (see _float)
                warnings.simplefilter("ignore", DeprecationWarning)
                if self.weights_only:
                    path = os.path.join(folder, "model.weights.h5")
                    self.model.save_weights(path)
                else:
                    path = os.path.join(folder, "model.keras")
                    self.model.save(path)
            art = cairn.Artifact(
                self.artifact_name,
                "model",
                metadata={
                    **self.extra_metadata,
                    "epoch": epoch,
                    "framework": f"keras {keras.__version__} ({keras.backend.backend()})",
                    "monitor": self.monitor,
                    **{k: v for k, v in metrics.items() if math.isfinite(v)},
                },
            )
            art.add_file(path)
            self.run.log_artifact(art, aliases=["best"] if best else [])
        stats = art.stats
        self.checkpoints.append(
            Checkpoint(epoch, art.version, art.size, int(stats.new_bytes), best)
        )


def _float(value: Any) -> float | None:
    """A logged value as a float (None when it is not a number). Converting a backend's
    scalar warns under NumPy 2 about keras's ``__array__``; the value is right, the warning
    is theirs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return float(value)
        except (TypeError, ValueError):
            return None


__all__ = ["CairnCallback", "Checkpoint"]
