"""Exit codes, the one-line error format, --debug, --version, --help."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import Invoke

from cairn.cli import output


@pytest.mark.embedded_only("opens no store")
def test_version(cli: Invoke) -> None:
    import cairn

    assert cli("--version").stdout == f"cairn {cairn.__version__}\n"


@pytest.mark.embedded_only("opens no store")
def test_help_lists_the_commands(cli: Invoke) -> None:
    out = cli("--help").stdout
    for name in ("push", "artifact", "lineage", "runs", "cache", "init-demo", "server"):
        assert name in out
    assert "--install-completion" in out


@pytest.mark.embedded_only("opens no store")
@pytest.mark.parametrize("args", [[], ["artifact"], ["artifact", "alias"], ["runs"]])
def test_no_arguments_shows_help(cli: Invoke, args: list[str]) -> None:
    result = cli(*args, code=2)
    assert "Usage: cairn" in result.stdout
    assert "Commands" in result.stdout
    assert "error" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "start"),
    [
        (["nosuch"], 2, "error: No such command 'nosuch'"),
        (["artifact", "get"], 2, "error: Missing argument"),
        (["artifact", "ls", "--jsonn"], 2, "error: No such option: --jsonn"),
        (["lineage", "x", "--depth", "0"], 2, "error: Invalid value for '--depth'"),
        (["artifact", "show", "bad name"], 2, "error: invalid artifact name 'bad name'"),
        (["artifact", "show", "nothing"], 3, "error: project 'default'"),
        (["runs", "show", "zzz"], 3, "error: "),
    ],
)
def test_errors_are_one_line(cli: Invoke, args: list[str], code: int, start: str) -> None:
    result = cli(*args, code=code)
    assert result.stderr.startswith(start), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_not_found_lists_what_exists(cli: Invoke, folder: Callable[..., Path]) -> None:
    cli("push", str(folder("data", {"a": "1"})))
    result = cli("artifact", "show", "dat", code=3)
    assert result.stderr.startswith("error: artifact 'dat' does not exist in project 'default'")
    assert "data" in result.stderr
    result = cli("artifact", "show", "data:v7", code=3)
    assert "has no version or alias 'v7'" in result.stderr


def test_exit_code_4_on_integrity_error(
    cli: Invoke, folder: Callable[..., Path], tmp_path: Path
) -> None:
    cli("push", str(folder("data", {"a": "1"})))
    dest = tmp_path / "x"
    dest.mkdir()
    result = cli("artifact", "verify", "data", str(dest), code=4)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


def test_unexpected_error_exit_1_and_debug_traceback(
    cli: Invoke, folder: Callable[..., Path], tmp_path: Path
) -> None:
    cli("push", str(folder("data", {"a": "1"})))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("artifact", "get", "data", "--root", str(blocker), code=1)
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    # a file in the way of the download is a typed error that says what to do
    assert "is a file, not a folder: download somewhere else" in result.stderr
    assert result.stderr.count("\n") == 1
    debug = cli("--debug", "artifact", "get", "data", "--root", str(blocker), code=1)
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_cairn_error_with_debug_shows_traceback(cli: Invoke) -> None:
    result = cli("--debug", "runs", "show", "zzz", code=3)
    assert "Traceback (most recent call last)" in result.stderr
    assert "RunNotFoundError" in result.stderr


@pytest.mark.embedded_only("opens no store")
def test_exit_code_mapping() -> None:
    from cairn import errors

    assert output.exit_code_for(errors.IntegrityError("x")) == 4
    assert output.exit_code_for(errors.ArtifactNotFoundError("x")) == 3
    assert output.exit_code_for(errors.InvalidPathError("x")) == 2
    assert output.exit_code_for(errors.StateError("x")) == 1
    assert output.exit_code_for(errors.StoreError("x")) == 1
    assert output.exit_code_for(RuntimeError("x")) == 1


@pytest.mark.embedded_only("opens no store")
def test_one_line_folds_multiline_messages() -> None:
    assert output.one_line("a:\n  b\n  c\nd") == "a: b; c; d"


@pytest.mark.embedded_only("opens no store")
@pytest.mark.parametrize(
    ("text", "value"),
    [("10GB", 10**10), ("500MB", 5 * 10**8), ("2GiB", 2 << 30), ("1.5k", 1500), ("0", 0)],
)
def test_parse_size(text: str, value: int) -> None:
    assert output.parse_size(text) == value


def test_quiet_hides_progress_only_for_the_invocation(
    cli: Invoke, folder: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("CAIRN_QUIET")
    data = folder("data", {"a": "1"})
    assert cli("push", str(data), "-q").stdout == "default/data:v0\n"
    assert "CAIRN_QUIET" not in os.environ
    got = cli("--quiet", "artifact", "get", "data").stdout
    assert got == f"{Path('artifacts/data:v0').absolute()}\n"
    assert "CAIRN_QUIET" not in os.environ


def test_advice_in_errors_names_cli_flags_not_python_arguments(
    cli: Invoke, folder: Callable[..., Path], tmp_path: Path
) -> None:
    import cairn
    from cairn.sdk.backend import reset_backends

    source = folder("source", {"big.csv": "1,2\n"})
    reset_backends()
    with cairn.init(project="default", job_type="refs") as run:
        art = cairn.Artifact("refs", type="dataset")
        art.add_reference((source / "big.csv").as_uri())
        art.add_file(str(folder("local", {"a.txt": "a\n"}) / "a.txt"))
        run.log_artifact(art)
    (source / "big.csv").unlink()

    failed = cli("artifact", "get", "refs:v0", "--root", str(tmp_path / "out"), code=3)
    assert "--allow-missing-references" in failed.stderr
    assert "=True" not in failed.stderr
    ok = cli(
        "artifact", "get", "refs:v0", "--root", str(tmp_path / "out"), "--allow-missing-references"
    )
    assert ok.stdout.strip().endswith(f"to {tmp_path / 'out'}")
    assert "warning: " in ok.stderr and "big.csv" in ok.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == "a\n"
    assert not (tmp_path / "out" / "big.csv").exists()

    one = folder("one", {"x.csv": "1\n"})
    two = folder("two", {"x.csv": "2\n"})
    clash = cli("push", str(one / "x.csv"), str(two / "x.csv"), "--name", "both", code=2)
    assert "push the paths under different base names" in clash.stderr
    assert "overwrite=True" not in clash.stderr


@pytest.mark.embedded_only("rewrites text only")
def test_every_cli_rewrite_changes_the_message_it_targets(cli: Invoke) -> None:
    from cairn.cli import hints

    samples = [
        "3 references can no longer be found at the source:\n  x\npass "
        "allow_missing_references=True to download the rest without them",
        "two files at one path: 'a' is already in artifact 'd'; pass overwrite=True to replace "
        "it or name= to put it elsewhere",
        "d:v0 has aliases best: move or remove them first (update_version(..., aliases=[])), or "
        "pass force=True to delete it and drop its aliases",
        "d:v0 has no file 'x'; list them with art.files()",
    ]
    assert len(samples) == len(hints.CLI_ADVICE)
    for text in samples:
        rewritten = hints.for_cli(text)
        assert rewritten != text
        assert "=True" not in rewritten and "art." not in rewritten
