"""Errors raised by the SDK end with advice written for Python ("pass overwrite=True"). On the
command line the same advice names a command or a flag instead; this rewrites it once, where
errors are printed, so the SDK keeps one message per error."""

from __future__ import annotations

import re

# (what the SDK says, what the CLI says instead); each pair is exercised by
# tests/cli/test_cli_errors.py through the command that can meet it
CLI_ADVICE: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"pass allow_missing_references=True to download the rest without them"),
        "add --allow-missing-references to download the rest without them",
    ),
    (
        re.compile(r"pass overwrite=True (?:to replace it )?or name= to put (?:it|them) elsewhere"),
        "push the paths under different base names (or push one folder holding them)",
    ),
    (
        re.compile(
            r"move or remove them first \(update_version\(\.\.\., aliases=\[\]\)\), or pass "
            r"force=True"
        ),
        "move or remove them first (cairn artifact alias rm NAME:VER ALIAS), or pass --force",
    ),
    (
        re.compile(r"list them with art\.files\(\)"),
        "list them with 'cairn artifact files NAME:VER'",
    ),
]


def for_cli(message: str) -> str:
    """The message with Python advice replaced by the command-line equivalent."""
    for pattern, replacement in CLI_ADVICE:
        message = pattern.sub(replacement, message)
    return message
