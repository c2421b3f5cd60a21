"""docs/cli.md is generated from the code by scripts/gen_cli_docs.py and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.embedded_only("generated docs; no store involved")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_COMMANDS = "put get ls versions show files diff verify history rm alias tag"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    assert text == _generator().render(), (
        "docs/cli.md is out of date: run `python scripts/gen_cli_docs.py`"
    )


def test_cli_reference_has_every_command() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    commands = _generator().all_commands()
    expected = {
        "cairn push",
        "cairn lineage",
        "cairn init-demo",
        "cairn runs ls",
        "cairn runs show",
        "cairn cache info",
        "cairn cache clean",
        *(f"cairn artifact {c}" for c in ARTIFACT_COMMANDS.split()),
        "cairn artifact alias add",
        "cairn artifact alias rm",
        "cairn artifact tag add",
        "cairn artifact tag rm",
    }
    assert expected <= set(commands)
    for path in commands:
        assert f"## `{path}`" in text, f"docs/cli.md misses {path}"
    assert "--json" in text.split("## `cairn artifact show`")[1].split("## ")[0]
