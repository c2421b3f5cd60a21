"""The exception tree: every class Cairn raises lives in `cairn.errors`, each has its own code,
and a code maps back to its class whatever has been imported (the client relies on it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from cairn import errors

SRC = Path(__file__).resolve().parents[1] / "src" / "cairn"


def _all_classes() -> list[type[errors.CairnError]]:
    found: list[type[errors.CairnError]] = []
    stack: list[type[errors.CairnError]] = [errors.CairnError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_defined_in_errors_py() -> None:
    defined = {
        node.name
        for node in ast.parse((SRC / "errors.py").read_text()).body
        if isinstance(node, ast.ClassDef)
    }
    elsewhere = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id in defined for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(SRC)}: {node.name}")
    assert elsewhere == []


def test_codes_are_unique_and_map_back_to_their_class() -> None:
    classes = [c for c in _all_classes() if c.__module__ == "cairn.errors"]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert errors.error_class(cls.code) is cls
    assert errors.error_class("no-such-code") is None


def test_the_client_maps_a_code_without_importing_the_module_that_raises_it() -> None:
    """A reference error crossing the wire arrives as its class even in a process that never
    imported `cairn.objects.references` (the old lookup walked whatever was imported)."""
    code = (
        "import sys\n"
        "from cairn.wire import exception_from\n"
        "from cairn.errors import ReferenceMissingError\n"
        "exc = exception_from(404, {'error': {'code': 'reference_missing', 'message': 'gone'}})\n"
        "assert type(exc) is ReferenceMissingError, type(exc)\n"
        "assert 'cairn.objects.references' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
