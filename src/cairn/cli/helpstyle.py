"""How `--help` shows what an option takes.

Typer 0.29 prints the Python annotation of every parameter (`<bool>`, `<str>`, `<list[Path]>`),
which reads as noise to a person: a flag takes nothing, and a repeatable option is said to be
repeatable in its help. This shows what Click always showed instead: nothing for a flag, the
metavar when one is set, else the value's kind in capitals (TEXT, INTEGER, PATH, a choice list).
"""

from __future__ import annotations

from typing import Any

import typer.core

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH", "datetime": "TIME"}


def value_label(display_type: str, metavar: str | None, is_flag: bool) -> str | None:
    """What a person types after an option, from Typer's ``<type>`` label (None for a flag)."""
    if metavar is not None:
        return metavar
    if is_flag:
        return None
    label = display_type.strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if label in _NAMES:
        return _NAMES[label]
    if "|" in label:
        return f"[{label}]"
    return label.upper()


def _option_label(self: Any, ctx: Any) -> str | None:
    return value_label(self.display_type(ctx), self.metavar, self.is_flag or bool(self.count))


def _argument_label(self: Any, ctx: Any) -> str | None:
    return None  # the argument's name (PATH, NAME) already says what it takes


def install() -> None:
    """Use these labels in every `cairn` help page (idempotent)."""
    option: Any = typer.core.TyperOption
    argument: Any = typer.core.TyperArgument
    option.display_type_rich = _option_label
    argument.display_type_rich = _argument_label
