"""What a person sees: help pages without type noise, tables that fit the terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cairn.cli import output
from cairn.cli.main import app

pytestmark = pytest.mark.embedded_only("help and table layout do not touch a store")


@pytest.mark.parametrize(
    "args", [["--help"], ["push", "--help"], ["artifact", "get", "--help"], ["pin", "--help"]]
)
def test_help_shows_what_options_take_not_python_types(args: list[str], backend: str) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0
    for noise in ("<bool>", "<str>", "<list[", "<Path>", "<int>"):
        assert noise not in result.stdout
    if args == ["push", "--help"]:
        line = next(x for x in result.stdout.splitlines() if "--name" in x)
        assert "TEXT" in line
        flag = next(x for x in result.stdout.splitlines() if "--json" in x)
        assert "TEXT" not in flag and "BOOL" not in flag.upper().replace("BOOLEAN", "")


def test_a_wide_table_fits_the_terminal_and_a_pipe_gets_it_whole(backend: str) -> None:
    t = output.table("NAME", "TYPE", "VERSIONS", "DESCRIPTION")
    t.add_row("a-rather-long-artifact-name-for-a-dataset", "dataset", "12", "x" * 70)
    t.add_row("short", "model", "3", "a short one")
    fitted = t.lines(80)
    assert all(len(line) <= 80 for line in fitted)
    assert "…" in fitted[1]
    assert fitted[0].split() == ["NAME", "TYPE", "VERSIONS", "DESCRIPTION"]  # headings whole
    assert "12" in fitted[1] and "dataset" in fitted[1]  # narrow columns untouched
    whole = t.lines()
    assert "x" * 70 in whole[1] and "…" not in whole[1]
