"""docs/configuration.md lists every CAIRN_* variable the code uses, and only those; only
`cairn.config` reads them (other modules call its functions)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cairn"
DOC = ROOT / "docs" / "configuration.md"
CAIRN_NAME = re.compile(r"\bCAIRN_[A-Z0-9_]+")
WANDB_NAME = re.compile(r"\bWANDB_[A-Z0-9_]+")
# the first cell of a table row: | `NAME` | ...
DOC_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", re.MULTILINE)

# Modules that read a CAIRN_* variable themselves, each with why: only to put it back.
READERS_ALLOWED = {
    # `cairn --quiet` sets CAIRN_QUIET for the command's SDK calls; the value before the
    # command is saved here to be restored after it
    ("cli/main.py", "CAIRN_QUIET"),
}


def _sources() -> dict[str, str]:
    return {
        path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(SRC.rglob("*.py"))
    }


def _used(pattern: re.Pattern[str]) -> tuple[set[str], set[str]]:
    """(names, prefixes) in the source: a name ending in `_` is a family (`CAIRN_SERVER_*`)."""
    found = {name for text in _sources().values() for name in pattern.findall(text)}
    return {n for n in found if not n.endswith("_")}, {n for n in found if n.endswith("_")}


def _documented(prefix: str) -> set[str]:
    return {name for name in DOC_ROW.findall(DOC.read_text()) if name.startswith(prefix)}


def test_every_variable_used_is_documented() -> None:
    names, families = _used(CAIRN_NAME)
    documented = _documented("CAIRN_")
    assert names - documented == set(), "add these to docs/configuration.md"
    for family in families:
        assert any(name.startswith(family) for name in documented), family


def test_every_documented_variable_is_used() -> None:
    names, _ = _used(CAIRN_NAME)
    assert _documented("CAIRN_") - names == set(), "not used by Cairn: remove from the docs"


def test_config_defines_every_variable() -> None:
    """No module names a variable `cairn.config` does not know."""
    names, _ = _used(CAIRN_NAME)
    in_config = set(CAIRN_NAME.findall((SRC / "config.py").read_text()))
    assert names - in_config == set()


def test_wandb_variables_are_documented() -> None:
    names, _ = _used(WANDB_NAME)
    assert names, "cairn.wandb honours WANDB_* variables"
    assert names == _documented("WANDB_")


# --- only config.py reads them ---------------------------------------------------------------
def _cairn_key(node: ast.expr) -> str | None:
    """The variable an expression names: "CAIRN_X", `config.CAIRN_X` or `CAIRN_X` (a
    constant named like its variable); else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value
    elif isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    else:
        return None
    return name if name.startswith("CAIRN_") else None


def _reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Where the code reads a CAIRN_* variable: ``X.get(KEY, ...)``, ``getenv(KEY)``,
    ``X[KEY]`` (loaded), ``KEY in X``, whatever X is (``env = os.environ`` and then
    ``env.get`` counts too). Writes (``os.environ[KEY] = ...``, ``pop``, ``update``) do not."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        key: str | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("get", "getenv"):
                key = _cairn_key(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = _cairn_key(node.slice)
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.In, ast.NotIn)) for op in node.ops
        ):
            key = _cairn_key(node.left)
        if key is not None:
            found.append((node.lineno, key))
    return found


def test_the_read_finder_finds_reads() -> None:
    sample = """
import os
from os import environ, getenv
from cairn import config
a = os.environ.get("CAIRN_A")
b = os.environ["CAIRN_B"]
c = os.getenv("CAIRN_C", "")
env = os.environ
d = env.get(config.CAIRN_D)
e = "CAIRN_E" in os.environ
f = getenv(CAIRN_F)
os.environ["CAIRN_W"] = "1"
os.environ.pop("CAIRN_W", None)
os.environ.update({"CAIRN_W": "1"})
g = os.environ.get("HOME")
"""
    keys = [key for _, key in _reads(ast.parse(sample))]
    assert sorted(keys) == ["CAIRN_A", "CAIRN_B", "CAIRN_C", "CAIRN_D", "CAIRN_E", "CAIRN_F"]


def test_only_config_reads_cairn_variables() -> None:
    offenders = []
    allowed_used = set()
    for module, text in _sources().items():
        if module == "config.py":
            continue
        for line, key in _reads(ast.parse(text, filename=module)):
            if (module, key) in READERS_ALLOWED:
                allowed_used.add((module, key))
            else:
                offenders.append(f"src/cairn/{module}:{line}: {key}")
    assert offenders == [], "read these through a function of cairn.config"
    assert allowed_used == READERS_ALLOWED, "an allowed reader no longer reads: drop it"


# --- the server's settings ---------------------------------------------------------------------
def test_every_server_setting_has_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cairn server` passes every setting but the fixed max_digests to its workers, and a
    worker reads back exactly what it was given."""
    from cairn import config
    from cairn.server.deps import ServerSettings

    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    assert set(config.SERVER_VARIABLES) == fields - {"max_digests"}
    settings = ServerSettings(
        database_url="sqlite:///x.db",
        store=Path("/srv/store"),
        max_json_bytes=5,
        auth_window=2.5,
        session_ttl=3600,
        direct=False,
    )
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert ServerSettings.from_env() == settings
    for name in config.SERVER_VARIABLES.values():
        monkeypatch.delenv(name)
    monkeypatch.setenv("CAIRN_DIR", "/home/me/.cairn")
    monkeypatch.delenv("CAIRN_DATABASE_URL", raising=False)
    assert ServerSettings.from_env() == ServerSettings(
        database_url="sqlite:////home/me/.cairn/cairn.db", store=Path("/home/me/.cairn/store")
    )
