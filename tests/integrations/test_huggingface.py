"""The Hugging Face Trainer callback (CPU build of PyTorch, no network): a 2-layer BERT built
from a config, with a word-level tokenizer built here, is trained for two epochs; each epoch's
save logs the model and tokenizer as one version, `best` follows the monitored metric, the
unchanged tokenizer and frozen embeddings are stored once, and the version loads back with
from_pretrained.

PyTorch comes from the CPU wheel scripts/setup.sh installs; without it these tests fail under
CAIRN_REQUIRE_ALL=1 (CI) and skip otherwise."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

import cairn
from unprivileged import require

HAVE_HF = all(find_spec(m) is not None for m in ("torch", "transformers", "accelerate"))

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "film", "great", "awful"]
VOCAB = 16384  # embedding rows (the tokenizer uses the first few): 4 MiB of frozen weights


@pytest.fixture(autouse=True)
def _needs_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    require(
        HAVE_HF,
        "torch, transformers and accelerate are not installed (scripts/setup.sh installs "
        "PyTorch's CPU wheel from /opt/wheels, then the huggingface-test extra)",
    )
    _import_hf()  # before the offline settings below, as when it was imported at collection
    # Nothing is fetched from the hub. huggingface_hub reads the variable once, at import, so the
    # module constant is patched too; both are undone after each test, so other tests (cairn://
    # through `datasets`) keep their normal mode whatever order they run in.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _import_hf() -> None:
    """Import PyTorch and transformers (~7 s) when a test of this file first runs, not when the
    file is collected: every test process collects every file, most run none of these."""
    global torch, Tokenizer, models, pre_tokenizers, AutoModelForSequenceClassification
    global AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast
    global Trainer, TrainerCallback, TrainingArguments, CairnCallback, Reviews
    if "Reviews" in globals():  # imported already (it is bound last)
        return
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from cairn.integrations.huggingface import CairnCallback

    class Reviews(torch.utils.data.Dataset[dict[str, Any]]):
        def __init__(self, tokenizer: PreTrainedTokenizerFast, n: int) -> None:
            texts = [("good movie", 1), ("great film", 1), ("bad movie", 0), ("awful film", 0)]
            self.items = []
            for i in range(n):
                text, label = texts[i % len(texts)]
                enc = tokenizer(text, padding="max_length", max_length=8)
                self.items.append({**enc, "labels": label})

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return self.items[i]


def _tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    model.bert.embeddings.requires_grad_(False)  # fine-tuning with frozen embeddings
    return model


def _trainer(
    tmp_path: Path, callbacks: list[Any], compute_metrics: Any = None, **args: Any
) -> Trainer:
    tokenizer = _tokenizer()
    training_args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=5e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        logging_steps=2,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **args,
    )
    return Trainer(
        model=_model(),
        args=training_args,
        train_dataset=Reviews(tokenizer, 32),
        eval_dataset=Reviews(tokenizer, 8),
        processing_class=tokenizer,
        callbacks=callbacks,
        compute_metrics=compute_metrics,
    )


@pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])
def test_two_epochs_log_model_and_tokenizer_as_one_version(tmp_path: Path) -> None:
    callback = CairnCallback("bert-tiny")
    with cairn.init(project="hf", job_type="fine-tune") as run:
        _trainer(tmp_path, [callback]).train()
        rows = run.metrics()
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["epoch"] for r in evals] == [1.0, 2.0]
    assert any("loss" in r and "learning_rate" in r for r in rows)  # training logs
    assert [r["_step"] for r in rows] == sorted(r["_step"] for r in rows)  # global steps
    stored = cairn.Api("hf").run(run.id)
    assert stored.job_type == "fine-tune"
    assert stored.config["learning_rate"] == 5e-3 and stored.config["num_train_epochs"] == 2
    assert stored.config["eval_strategy"] == "epoch"
    assert stored.config["model"] == "BertForSequenceClassification"
    assert stored.config["model_config"]["num_hidden_layers"] == 2

    api = cairn.Api("hf")
    # one version per epoch's save; the final model is the second one (not stored again)
    assert sorted(v.version for v in api.artifact_versions("bert-tiny")) == ["v0", "v1"]
    latest = api.artifact("bert-tiny:latest")
    assert latest.version == "v1" and latest.type == "model"
    assert latest.metadata["global_step"] == 8 and latest.metadata["monitor"] == "eval_loss"
    losses = [r["eval_loss"] for r in evals]
    assert api.artifact("bert-tiny:best").version == f"v{losses.index(min(losses))}"
    producer = latest.logged_by()
    assert producer is not None and producer.id == run.id
    logged = [a.qualified_name for a in run.logged_artifacts()]
    assert logged == ["hf/bert-tiny:v0", "hf/bert-tiny:v1"]

    # model and tokenizer in one folder, as from_pretrained wants them
    files = {f.path for f in latest.files()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    folder = latest.download(tmp_path / "dl")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("good film")["input_ids"] == [WORDS.index("good"), WORDS.index("film")]
    with torch.no_grad():
        logits = model(**tokenizer(["good movie"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)

    # the second save stored the changed layers only: tokenizer and frozen embeddings are reused
    first, second = callback.checkpoints[:2]
    assert first.new_bytes >= first.size * 0.9
    assert second.size > 4 * 2**20 and second.reused > 0.5, second


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_starts_a_run_and_follows_the_trainers_best_metric(tmp_path: Path) -> None:
    """Without a run the callback starts and finishes one; with metric_for_best_model and
    greater_is_better set on the Trainer, `best` follows them (the `eval_` prefix implied)."""
    scores = iter([0.9, 0.5])
    saved: list[torch.Tensor] = []

    class Snapshot(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
            saved.append(model.classifier.weight.detach().clone())

    callback = CairnCallback("scored", project="hf2")
    trainer = _trainer(
        tmp_path,
        [Snapshot(), callback],
        compute_metrics=lambda _: {"score": next(scores)},
        metric_for_best_model="score",
        greater_is_better=True,
    )
    trainer.train()
    assert callback.run is not None and callback.monitor == "score" and callback.mode == "max"
    stored = cairn.Api("hf2").run(callback.run.id)
    assert stored.state == "finished" and stored.job_type == "training"
    api = cairn.Api("hf2")
    assert api.artifact("scored:latest").version == "v1"
    best = api.artifact("scored:best")
    assert best.version == "v0" and best.metadata["eval_score"] == 0.9
    assert [c.best for c in callback.checkpoints] == [True, False]
    model = AutoModelForSequenceClassification.from_pretrained(best.download(tmp_path / "best"))
    assert torch.equal(model.classifier.weight, saved[0])
    assert not torch.equal(saved[0], saved[1])
