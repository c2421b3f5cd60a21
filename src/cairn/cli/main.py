"""Entry point of the `cairn` command: the Typer app, global flags, and the one place where
errors become a one-line message and an exit code.

Exit codes: 0 ok, 1 error, 2 usage (bad arguments, names, paths), 3 not found, 4 verification
failed. Commands import the SDK only when they run, so `cairn --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cairn import config
from cairn.cli import (
    account,
    artifact,
    cache,
    helpstyle,
    hints,
    initdemo,
    lineage,
    output,
    pin,
    projects,
    push,
    registry,
    retention,
    runs,
    server,
    webhook,
)
from cairn.cli import check as check_cli
from cairn.cli import gc as gc_cli
from cairn.cli.output import STATE, ProjectOpt, QuietOpt

try:  # Typer >= 0.2x ships its own copy of Click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]


class CairnGroup(TyperGroup):
    """The root command: turns every error into ``error: <message>`` on stderr."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Typer then exits with 130 (EXIT_INTERRUPTED), silently
            output.error_line(
                "interrupted: what was stored or downloaded so far is kept, and a push or a "
                "download run again goes on from there"
            )
            raise

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        output.reset()
        saved_quiet = os.environ.get(config.CAIRN_QUIET)  # --quiet sets it for this command
        try:
            code = self._run(args, prog_name, complete_var, **extra)
        finally:
            if saved_quiet is None:
                os.environ.pop(config.CAIRN_QUIET, None)
            else:
                os.environ[config.CAIRN_QUIET] = saved_quiet
        if not standalone_mode:
            return code
        sys.exit(code)

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # a group run without a command: its help (already printed by Rich, else in
                # the message) is the answer; the exit code still says "usage"
                if exc.format_message():
                    sys.stdout.write(exc.format_message() + "\n")
                return exc.exit_code
            where = exc.ctx.command_path if exc.ctx is not None else "cairn"
            output.error_line(f"{exc.format_message()} (see '{where} --help')")
            return exc.exit_code
        except ClickException as exc:
            output.error_line(exc.format_message())
            return exc.exit_code
        except typer.Abort:
            output.error_line("aborted")
            return output.EXIT_ERROR
        except BrokenPipeError:
            # the reader went away (`cairn artifact files x | head`): stop quietly
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return output.EXIT_ERROR
        except Exception as exc:
            return report(exc)
        return rv if isinstance(rv, int) else output.EXIT_OK


def report(exc: BaseException) -> int:
    """Print an error as one line (and the traceback with --debug); return its exit code."""
    from cairn.errors import CairnError

    if STATE.debug:
        traceback.print_exception(exc)
    if isinstance(exc, CairnError | output.CliError | OSError):
        message = hints.for_cli(str(exc))
    else:
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if not STATE.debug and not isinstance(exc, CairnError | output.CliError):
        message += " (run again with --debug to see the traceback)"
    output.error_line(message)
    return output.exit_code_for(exc)


helpstyle.install()

app = typer.Typer(
    name="cairn",
    cls=CairnGroup,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=True,
    help="Cairn: version the data and models ML work reads and writes, with lineage.",
    epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 verification failed.",
)


def _version(value: bool) -> None:
    if value:
        from cairn._version import __version__

        typer.echo(f"cairn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print Cairn's version and exit."
        ),
    ] = False,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when an error happens.")
    ] = False,
) -> None:
    """Cairn: version the data and models ML work reads and writes, with lineage.

    Data lives in $CAIRN_DIR (default ~/.cairn). The project comes from --project, else
    $CAIRN_PROJECT, else 'default'.
    """
    if project:
        STATE.project = project
    if quiet:
        STATE.quiet = True
        os.environ[config.CAIRN_QUIET] = "1"
    if debug:
        STATE.debug = True


app.command("push")(push.push)
app.add_typer(artifact.app, name="artifact")
app.command("lineage")(lineage.lineage)
app.add_typer(runs.app, name="runs")
app.command("projects")(projects.projects)
app.add_typer(cache.app, name="cache")
app.command("init-demo")(initdemo.init_demo)
app.add_typer(server.app, name="server")
app.command("gc")(gc_cli.gc)
app.command("check")(check_cli.check)
app.command("pin")(pin.pin)
app.add_typer(registry.app, name="registry")
app.command("link")(registry.link)
app.command("unlink")(registry.unlink)
app.command("search")(registry.search)
app.add_typer(registry.audit_app, name="audit")
app.add_typer(webhook.app, name="webhook")
app.add_typer(retention.app, name="retention")
artifact.app.command("ttl")(retention.ttl)
account.register(app)


def main() -> None:
    app()
