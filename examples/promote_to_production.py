"""Promote a fine-tuned model to production, then ask which model was in production last week.

A registry `models` holds the collection `models/classifier`; its `production` alias is
protected (on a server, only the registry's maintainers may move it). Two training runs in two
projects publish into it; a deploy run uses `models/classifier:production` (lineage is recorded
against the real version), and the history answers "what was in production then?".

    python examples/promote_to_production.py        # on the embedded store (CAIRN_DIR)
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cairn
from cairn.errors import RegistryNotFoundError


def train(project: str, name: str, weights: bytes, acc: float, folder: Path) -> cairn.Artifact:
    with cairn.init(project=project, job_type="train") as run:
        path = folder / f"{name}.bin"
        path.write_bytes(weights)
        model = cairn.Artifact(name, type="model", metadata={"acc": acc})
        model.add_file(path)
        run.log_artifact(model)
        run.link_artifact(model, "models/classifier", aliases=["staging"])
        return model


def main() -> None:
    api = cairn.Api()
    try:
        api.registry("models")
    except RegistryNotFoundError:
        api.create_registry("models", "Published models", protected_aliases=["production"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = train("vision", "resnet", b"base weights", 0.88, folder)
        api.set_aliases(f"models/classifier:{base.links()[0].label}", add=["production"])
        last_week = datetime.now(UTC)  # (in real life: a week ago)
        time.sleep(0.01)
        tuned = train("vision-finetune", "resnet-ft", b"tuned weights", 0.93, folder)
        good = api.artifact_versions("models/classifier", filters={"metadata.acc": {"$gt": 0.9}})
        api.set_aliases(f"models/classifier:{tuned.links()[0].label}", add=["production"])
        print(f"best above 0.9: {[a.qualified_name for a in good]}")

        with cairn.init(project="serving", job_type="deploy") as deploy:
            live = deploy.use_artifact("models/classifier:production")
            print(f"deployed {live.qualified_name} (acc {live.metadata['acc']})")

    then = api.artifact("models/classifier:production", at=last_week)
    now = api.artifact("models/classifier:production")
    print(f"in production last week: {then.qualified_name}; now: {now.qualified_name}")
    for entry in api.collection_history("models/classifier"):
        if entry.field == "alias":
            where = f"v{entry.version}" if entry.version is not None else "(removed)"
            print(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.alias} -> {where}")


if __name__ == "__main__":
    main()
