"""The public names of the `cairn` package are exactly the documented ones (docs/api.md)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import cairn

DOCUMENTED = [
    "Api",
    "Artifact",
    "ArtifactFile",
    "Run",
    "__version__",
    "current_run",
    "errors",
    "finish",
    "init",
    "log",
    "log_artifact",
    "use_artifact",
]

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_all_is_exactly_the_documented_names_and_sorted() -> None:
    assert cairn.__all__ == DOCUMENTED
    assert cairn.__all__ == sorted(cairn.__all__)
    assert len(set(cairn.__all__)) == len(cairn.__all__)


def test_every_name_in_all_exists() -> None:
    for name in cairn.__all__:
        assert hasattr(cairn, name), name
    namespace: dict[str, object] = {}
    exec("from cairn import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(cairn.__all__)


def test_no_undocumented_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(cairn).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == {n for n in DOCUMENTED if not n.startswith("_")} - {"errors"}


def test_every_public_name_appears_in_the_api_docs() -> None:
    text = API_DOC.read_text()
    for name in cairn.__all__:
        if name == "__version__":
            continue
        assert re.search(rf"\b{re.escape(name)}\b", text), f"{name} is not in docs/api.md"


def test_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", cairn.__version__)
