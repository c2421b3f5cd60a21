"""Hugging Face ``Trainer``: log checkpoints, training arguments and metrics to Cairn.

    from cairn.integrations.huggingface import CairnCallback
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      processing_class=tokenizer, callbacks=[CairnCallback("my-model")])

What the Trainer logs (``logging_steps``, evaluations) goes to the run, step = the global step.
Each time the Trainer saves a checkpoint (``save_strategy``, ``save_steps``), and once more when
training ends, the model and its tokenizer (or processor) are saved with ``save_pretrained`` into
one folder, logged as a new version of a ``model`` artifact, so the downloaded version opens with
``AutoModel….from_pretrained(path)``, ``AutoTokenizer.from_pretrained(path)`` or ``pipeline(model=
path)``. The newest is ``latest``; the one with the best ``monitor`` carries ``best``. ``monitor``
defaults to the Trainer's ``metric_for_best_model`` (else ``eval_loss``; the ``eval_`` prefix may
be left out) and ``mode`` to its ``greater_is_better`` (else "auto": "max" for accuracy-like
names). A version with the same content as an earlier one is not stored again (the final save
after ``load_best_model_at_end`` is the best version). Versions are stored as content-defined
chunks: the tokenizer, and what did not change (frozen embeddings), is stored once;
``callback.checkpoints`` records each one's size and new bytes. The run's config gets the main
training arguments, the model's class, size and ``model_config``.

The run is ``cairn.current_run()``; without one, the callback starts a run (job type
"training") when training begins and finishes it when training ends. With several processes,
only the main process logs.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import torch
import transformers
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import cairn
from cairn.integrations._common import Checkpoint, better, jsonable, resolve_mode, scalar
from cairn.sdk.run import Run

# the training arguments a reader of the run looks for first (the rest are defaults, mostly)
_ARGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "lr_scheduler_type",
    "optim",
    "seed",
    "fp16",
    "bf16",
    "eval_strategy",
    "save_strategy",
    "metric_for_best_model",
)


class CairnCallback(TrainerCallback):  # type: ignore[misc, unused-ignore]
    """Log metrics, training arguments and checkpoints of ``Trainer.train`` (see the module
    docstring)."""

    def __init__(
        self,
        name: str = "model",
        *,
        monitor: str | None = None,
        mode: str | None = None,
        project: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if mode is not None:
            resolve_mode(monitor or "eval_loss", mode)  # refuse a bad mode now
        self.artifact_name = name
        self.monitor = monitor
        self.mode = mode
        self.project = project
        self.extra_metadata = dict(metadata or {})
        self.best: float | None = None
        self.checkpoints: list[Checkpoint] = []
        self.run: Run | None = None
        self._own_run = False
        self._eval: dict[str, float] = {}
        self._saved_step: int | None = None

    # --- run ---------------------------------------------------------------------------------
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if self.monitor is None:
            self.monitor = args.metric_for_best_model or "eval_loss"
        if self.mode is None:
            greater = args.greater_is_better if args.metric_for_best_model else None
            self.mode = "auto" if greater is None else ("max" if greater else "min")
        self.mode = resolve_mode(self.monitor, self.mode)
        if not state.is_world_process_zero:
            return
        run = cairn.current_run()
        if run is None or run.state != "running":
            run = cairn.init(project=self.project, job_type="training")
            self._own_run = True
        self.run = run
        for key, value in _config(args, model).items():
            run.config.setdefault(key, value)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        try:
            if self._saved_step != state.global_step and model is not None:
                self._save(args, state, model, _processor(kwargs))
        finally:
            if self._own_run:
                self.run.finish()

    # --- metrics and checkpoints -------------------------------------------------------------
    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        metrics = {k: f for k, v in (logs or {}).items() if (f := scalar(v)) is not None}
        if metrics:
            self.run.log(metrics, step=state.global_step)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._eval = {k: f for k, v in (metrics or {}).items() if (f := scalar(v)) is not None}

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.is_world_process_zero and self.run is not None and model is not None:
            self._save(args, state, model, _processor(kwargs))

    def _monitored(self) -> float | None:
        assert self.monitor is not None
        for key in (self.monitor, f"eval_{self.monitor}"):
            if key in self._eval:
                return self._eval[key]
        return None

    def _save(
        self, args: TrainingArguments, state: TrainerState, model: Any, processor: Any
    ) -> None:
        assert self.run is not None and self.mode is not None
        value = self._monitored()
        improved = better(value, self.best, self.mode)
        if improved:
            self.best = value
        epoch = float(state.epoch or 0.0)
        with tempfile.TemporaryDirectory(prefix="cairn-hf-") as folder:
            model.save_pretrained(folder)
            if processor is not None:
                processor.save_pretrained(folder)
            art = cairn.Artifact(
                self.artifact_name,
                "model",
                metadata={
                    **self.extra_metadata,
                    "epoch": epoch,
                    "global_step": state.global_step,
                    "framework": f"transformers {transformers.__version__} "
                    f"(torch {torch.__version__})",
                    "monitor": self.monitor,
                    **{k: v for k, v in self._eval.items() if math.isfinite(v)},
                },
            )
            art.add_dir(folder)
            self.run.log_artifact(art, aliases=["best"] if improved else [])
        self._saved_step = state.global_step
        stats = art.stats
        self.checkpoints.append(
            Checkpoint(
                epoch, art.version, art.size, int(stats.new_bytes), improved, state.global_step
            )
        )


def _processor(kwargs: dict[str, Any]) -> Any:
    """The tokenizer or processor the Trainer holds (``tokenizer=`` before transformers 4.46)."""
    return kwargs.get("processing_class") or kwargs.get("tokenizer")


def _config(args: TrainingArguments, model: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key in _ARGS:
        value = getattr(args, key, None)
        if value is not None:
            config[key] = jsonable(value)
    if model is not None:
        params = list(model.parameters())
        config["model"] = type(model).__name__
        config["parameters"] = sum(p.numel() for p in params)
        config["trainable_parameters"] = sum(p.numel() for p in params if p.requires_grad)
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_diff_dict"):
            config["model_config"] = jsonable(model_config.to_diff_dict())
    config["framework"] = f"transformers {transformers.__version__} (torch {torch.__version__})"
    return config


__all__ = ["CairnCallback", "Checkpoint"]
