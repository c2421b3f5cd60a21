"""A W&B-style artifact script, run unchanged on Cairn through ``import cairn.wandb as wandb``.

It prepares a dataset, trains a toy model on it and publishes the model, the way a W&B user
writes it: ``wandb.init`` with an entity and a config (read and set as ``wandb.config.lr``,
``config.update({...})``), ``wandb.Artifact``, ``run.log_artifact`` with
``aliases=["latest", ...]``, ``run.use_artifact("entity/project/name:alias")``, ``wandb.log``,
``wandb.summary``, ``wandb.Api().artifact(...)`` and ``artifact_versions``.

    python examples/wandb_style.py [WORKDIR]

Where it goes: the Cairn store the environment names (``CAIRN_URL`` for a server, else the
embedded store in ``CAIRN_DIR``); ``WANDB_MODE=offline`` keeps it in the embedded store.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

import cairn.wandb as wandb

ENTITY = "my-team"
PROJECT = "wandb-style"


def prepare(workdir: Path) -> None:
    run = wandb.init(project=PROJECT, entity=ENTITY, job_type="prepare", config={"rows": 200})
    rows = wandb.config["rows"]
    wandb.config.seed = 7
    rng = random.Random(wandb.config.seed)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", rows * 3 // 4), ("test", rows // 4)):
        with open(data / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["x", "y"])
            for _ in range(count):
                x = rng.uniform(-1, 1)
                writer.writerow([f"{x:.6f}", f"{3 * x + 0.5 + rng.gauss(0, 0.1):.6f}"])
    dataset = wandb.Artifact(
        "points",
        type="dataset",
        description="noisy points on y = 3x + 0.5",
        metadata={"rows": rows, "columns": ("x", "y"), "noise": np.float32(0.1)},
    )
    dataset.add_dir(str(data))
    run.log_artifact(dataset, aliases=["latest", "raw"])
    wandb.finish()


def train(workdir: Path) -> None:
    run = wandb.init(project=PROJECT, entity=ENTITY, job_type="train", config={"lr": 0.5})
    config = wandb.config
    config.update({"epochs": 40, "optimizer": "gd"})
    dataset = run.use_artifact(f"{ENTITY}/{PROJECT}/points:latest", type="dataset")
    folder = Path(dataset.download(root=str(workdir / "download")))
    with open(folder / "train.csv") as f:
        points = np.array([[float(r["x"]), float(r["y"])] for r in csv.DictReader(f)])
    x, y = points[:, 0], points[:, 1]
    w = b = 0.0
    for epoch in range(config.epochs):
        error = w * x + b - y
        w -= config.lr * float(np.mean(error * x))
        b -= config.lr * float(np.mean(error))
        wandb.log({"epoch": epoch, "loss": np.mean(error**2)})
    wandb.summary["w"], wandb.summary["b"] = w, b

    model = wandb.Artifact("line-model", type="model", metadata={"w": w, "b": b})
    with model.new_file("weights.json") as f:
        json.dump({"w": w, "b": b}, f)
    wandb.run.log_artifact(model, aliases=["latest", "best"])
    wandb.finish()


def report() -> dict[str, object]:
    api = wandb.Api()
    best = api.artifact(f"{ENTITY}/{PROJECT}/line-model:best", type="model")
    producer = best.logged_by()
    versions = api.artifact_versions("dataset", f"{ENTITY}/{PROJECT}/points")
    summary = {
        "model": f"{best.name}:{best.version}",
        "w": round(best.metadata["w"], 2),
        "b": round(best.metadata["b"], 2),
        "trained_by": producer.job_type if producer else None,
        "dataset_versions": [v.version for v in versions],
        "inputs": [a.name for a in producer.used_artifacts()] if producer else [],
    }
    print(json.dumps(summary))
    return summary


def main(workdir: Path) -> dict[str, object]:
    prepare(workdir)
    train(workdir)
    return report()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="wandb-style-")))
