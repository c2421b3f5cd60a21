"""`cairn init-demo` and examples/pipeline.py, which share cairn.demo."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn
from unprivileged import require


def require_numpy() -> None:
    """The demo needs NumPy (the `examples` extra, which `dev` pulls in): fail in CI."""
    from importlib.util import find_spec

    require(find_spec("numpy") is not None, "NumPy is not installed (pip install -e '.[dev]')")


pytestmark = pytest.mark.embedded_only(
    "init-demo seeds a local store to explore; too slow to run twice"
)

ROOT = Path(__file__).resolve().parents[2]


def test_init_demo_seeds_a_store(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    require_numpy()
    out = cli("init-demo", "--project", "d", "--rows", "60").stdout
    assert "Project 'd':" in out
    assert "Lineage of d/classifier:v1 (upstream: what it came from):" in out
    assert "└── run " in out and " -> " not in out
    assert "cairn lineage d/classifier:finetuned --up" in out
    names = [a["name"] for a in cli_json("artifact", "ls", "d")]
    assert names == ["classifier", "eval-report", "training-data"]
    assert cairn.Api("d").artifact("classifier:production").version == "v0"
    jobs = [r["job_type"] for r in cli_json("runs", "ls", "d")]
    assert jobs == ["fine-tuning", "dataset-creation", "evaluation", "training", "dataset-creation"]
    tree = cli("lineage", "d/classifier:finetuned", "--up").stdout
    assert "training-data:v0 (dataset)" in tree


def test_init_demo_without_numpy(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    result = cli("init-demo", code=1)
    assert result.stderr.startswith("error: the demo needs NumPy")
    assert "pip install numpy" in result.stderr
    assert result.stderr.count("\n") == 1


def test_example_script_prints_the_summary(tmp_path: Path) -> None:
    require_numpy()
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline.py"), "--project", "ex", "--rows", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Project 'ex':"
    assert lines[1].split()[:2] == ["classifier:v1", "model"]
    assert "aliases=latest,finetuned" in lines[1]
    assert "Lineage of ex/classifier:v1 (upstream: what it came from):" in done.stdout
    tree = done.stdout.split("what it came from):\n", 1)[1].splitlines()
    assert tree[0] == "classifier:v1 (model)"  # drawn as a tree, not as an edge list
    assert "->" not in done.stdout
    assert tree[1].startswith("└── run ") and tree[1].endswith("fine-tuning")
    assert any(line.lstrip("│ ").startswith("├── classifier:v0") for line in tree)
