"""The layer table in docs/architecture.md is the law: every module's imports are checked
against it, and no two modules import each other when they load."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cairn"
TABLE_ROW = re.compile(r"^\| `(cairn(?:\.[a-z_]+)?)` \|.*\| (.+) \|$")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. cairn.sdk.run
    target: str  # the imported module, e.g. cairn.objects.tree
    line: int
    at_load: bool  # module level, not inside a function or `if TYPE_CHECKING:`


def layer_table() -> list[tuple[str, set[str]]]:
    """(package, packages it may import), in the table's order."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        found = TABLE_ROW.match(line.strip())
        if found:
            name, imports = found.groups()
            allowed = set(re.findall(r"`([a-z_]+)`", imports))
            if imports.strip() != "nothing":
                assert allowed, f"the imports column of {name} names no package: {imports!r}"
            rows.append((_short(name), allowed))
    return rows


def _short(name: str) -> str:
    return "cairn" if name == "cairn" else name.removeprefix("cairn.")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cairn"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, module: str | None = None) -> Iterator[Import]:
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, at_load: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for inner in child.body:
                    yield from visit(ast.Module(body=[inner], type_ignores=[]), False)
                for inner in child.orelse:
                    yield from visit(ast.Module(body=[inner], type_ignores=[]), at_load)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, at_load)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:
                    # `from cairn import errors` imports the module cairn.errors
                    candidate = f"{source}.{alias.name}"
                    target = candidate if _exists(candidate) else source
                    yield Import(module, target, child.lineno, at_load)
            else:
                yield from visit(child, at_load)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), True)


def _exists(module: str) -> bool:
    if not module.startswith("cairn"):
        return False
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative / "__init__.py").exists()


def all_imports() -> list[Import]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        found.extend(i for i in imports_of(path) if i.target.split(".")[0] == "cairn")
    return found


def test_the_table_is_ordered_so_no_layer_imports_one_below_it() -> None:
    table = layer_table()
    names = [name for name, _ in table]
    assert len(names) == len(set(names)), "a package has two rows"
    for position, (name, allowed) in enumerate(table):
        above = set(names[:position])
        assert allowed <= above, (
            f"{name} may import {sorted(allowed - above)}, which are not above it in the table"
        )


def test_every_package_has_a_row() -> None:
    listed = {name for name, _ in layer_table()}
    present = {layer_of(module_name(path)) for path in SRC.rglob("*.py")}
    assert present - listed == set(), "packages missing from the layer table"
    assert listed - present == set(), "the layer table names packages that do not exist"


def test_every_import_follows_the_layer_table() -> None:
    allowed = dict(layer_table())
    broken = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in all_imports()
        if layer_of(i.target) != layer_of(i.module)
        and layer_of(i.target) not in allowed[layer_of(i.module)]
    ]
    assert broken == [], "imports that break the layer table in docs/architecture.md"


def find_circles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as the circle it closes."""
    circles: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return circles


def test_no_two_modules_import_each_other_at_load_time() -> None:
    graph: dict[str, set[str]] = {}
    for i in all_imports():
        if i.at_load and i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
    # a package's __init__ importing its own submodules is how packages re-export
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(module + ".")}
    assert find_circles(graph) == [], "import circles at load time"


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circles(graph) == ["a -> b -> c -> a"]
    assert find_circles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_imports_inside_functions_and_type_checking_blocks(
    tmp_path: Path,
) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import cairn.core.names\n"
        "if TYPE_CHECKING:\n"
        "    from cairn.sdk.run import Run\n"
        "def f() -> None:\n"
        "    from cairn import errors\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    found = {(i.target, i.at_load) for i in imports_of(probe, "cairn.core.probe")}
    assert ("cairn.core.names", True) in found
    assert ("cairn.sdk.run", False) in found
    assert ("cairn.errors", False) in found


def test_no_module_imports_another_modules_private_names() -> None:
    reaching = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cairn"):
                reaching.extend(
                    f"{module_name(path)}:{node.lineno} imports {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                )
    assert reaching == [], "private names used outside their module: make them public"
