"""Jupyter shows cards for versions, runs and lineage graphs: a real notebook, executed by a
real kernel (nbclient + ipykernel), embedded and through a server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    """
import cairn
from pathlib import Path
Path("data").mkdir(exist_ok=True)
Path("data/train.csv").write_text("a,b\\n1,2\\n")
Path("data/<script>.txt").write_text("escaped?")
with cairn.init(project="nb", job_type="prepare", config={"lr": 0.1}) as prep:
    data = prep.log_artifact("data", name="train-data", aliases=["best"])
    prep.log({"rows": 1})
with cairn.init(project="nb", job_type="train") as train:
    train.use_artifact("train-data:best")
    model = cairn.Artifact("model", "model", metadata={"acc": 0.93})
    with model.new_file("weights.bin", "wb") as f:
        f.write(b"0" * 2048)
    train.log_artifact(model)
""",
    "data",
    "prep",
    "cairn.Api('nb').lineage('train-data:v0')",
    "cairn.Artifact('draft-one', 'dataset')",
]


def _html(cell: Any) -> str:
    found = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    assert len(found) == 1, cell.outputs
    return str(found[0])


@pytest.mark.parametrize("backend_mode", ["sqlite", "remote"])
def test_notebook_shows_cards(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": "."}}
    ).execute()
    version, run, graph, draft = (_html(c) for c in nb.cells[1:])

    assert "nb/train-data:v0" in version
    assert "best" in version and "latest" in version
    assert "train.csv" in version and "2 files" in version
    assert "&lt;script&gt;.txt" in version and "<script>" not in version

    assert "run " in run and "finished" in run and "prepare" in run
    assert "lr" in run and "0.1" in run  # config
    assert "rows" in run  # summary
    assert "nb/train-data:v0" in run  # what it logged

    assert graph.count("<svg") == 1 and "cairn-lineage" in graph
    nodes = re.findall(r'data-node="([^"]+)"', graph)
    kinds = re.findall(r'data-kind="([^"]+)"', graph)
    # prepare-run -> train-data:v0 -> train-run -> model:v0
    assert len(nodes) == 4 and sorted(kinds) == ["run", "run", "version", "version"]
    assert graph.count('class="edge"') == 3
    assert "train-data:v0" in graph and "model:v0" in graph

    assert "draft-one" in draft and "not logged yet" in draft
