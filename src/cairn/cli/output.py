"""What every command shares: global flags, options, printing, JSON, sizes, times and the
mapping from errors to exit codes.

Results go to stdout; errors, hints and progress to stderr. Nothing here imports the SDK.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cairn import config

if TYPE_CHECKING:
    from rich.console import Console

# --- exit codes -------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report a process SIGINT stopped


@dataclass
class State:
    """Flags of the current invocation (reset by each ``main``)."""

    quiet: bool = False
    debug: bool = False
    console: Console | None = None
    project: str | None = None  # `cairn --project P COMMAND ...`


STATE = State()


def reset() -> None:
    STATE.quiet = False
    STATE.debug = config.debug()
    STATE.console = None
    STATE.project = None


# --- options shared by several commands ------------------------------------------------------
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Project. Default: $CAIRN_PROJECT, else 'default'. A NAME of the form "
        "'project/name' overrides it.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON to stdout instead.")
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print only the essential result (for scripts)."),
]


def quiet(local: bool = False) -> bool:
    """Whether to print only the essential result: the command's --quiet or the global one."""
    return local or STATE.quiet


def silence(local: bool) -> None:
    """A command's --quiet also hides the SDK's progress bars (restored by ``main``)."""
    if local:
        STATE.quiet = True
        os.environ[config.CAIRN_QUIET] = "1"


def resolve_project(project: str | None) -> str:
    """The command's ``--project``, else the one given before the command, else CAIRN_PROJECT,
    else 'default' (validated)."""
    from cairn import config
    from cairn.core import names

    chosen = project or STATE.project or config.default_project() or "default"
    return names.check_project(chosen)


# --- printing ---------------------------------------------------------------------------------
def console() -> Console:
    """Rich console on stdout; wide and colourless when stdout is not a terminal."""
    if STATE.console is None:
        from rich.console import Console

        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
        STATE.console = Console(width=width, highlight=False, soft_wrap=False)
    return STATE.console


def echo(text: str = "") -> None:
    """Plain text to stdout (no markup, no wrapping)."""
    sys.stdout.write(text + "\n")


def heading(value: str) -> None:
    """A section title: bold on a terminal, plain text otherwise."""
    if sys.stdout.isatty():
        from rich.text import Text

        console().print(Text(value, style="bold"))
    else:
        echo(value)


def hint(text: str) -> None:
    """Advice for a person (stderr), suppressed by --quiet."""
    if not STATE.quiet:
        sys.stderr.write(text + "\n")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Stop the command with one error line and an exit code."""
    raise CliError(message, code)


class CliError(Exception):
    """An error found by the CLI itself (not the SDK)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = code


def exit_code_for(exc: BaseException) -> int:
    from cairn.errors import CairnError, IntegrityError, InvalidInputError, NotFoundError

    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidInputError):
        return EXIT_USAGE
    if isinstance(exc, CairnError):
        return EXIT_ERROR
    return EXIT_ERROR


def one_line(message: str) -> str:
    """Fold a multi-line message into one line."""
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    out = ""
    for p in parts:
        if not out:
            out = p
        elif out.endswith(":"):
            out += " " + p
        else:
            out += "; " + p
    return out


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")


# --- formatting -------------------------------------------------------------------------------
def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}


def parse_size(text: str) -> int:
    """'10GB' (decimal), '512MiB' (binary), '1.5g', '0', '1234' (bytes) -> bytes."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise typer.BadParameter(
            f"{text!r} is not a size: use a number with an optional unit, e.g. 10GB, 500MB, "
            "2GiB or 0"
        )
    return int(float(m.group(1)) * _UNITS[unit])


def when(value: datetime | None) -> str:
    """A timestamp in the local time zone, to the second."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return "-"
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest


def json_value(value: Any) -> str:
    """A metadata/config value as compact JSON text (strings quoted)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def comma(items: list[str]) -> str:
    return ", ".join(items) if items else "-"


class Table:
    """A plain-text table: left-aligned columns, no trailing spaces. In a pipe nothing is cut
    (scripts read every cell whole); on a terminal the widest columns are shortened with '…'
    so that each line fits the window."""

    def __init__(self, *columns: str) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append([c.replace("\n", " ") for c in cells])

    def lines(self, width: int | None = None) -> list[str]:
        """The table's lines; with ``width``, the widest columns are cut to fit it."""
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        if width is not None:
            widths = fit_widths(widths, [len(c) for c in self.columns], width, len(GAP))
        out = []
        for row in [self.columns, *self.rows]:
            cells = [cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
            out.append(GAP.join(cells).rstrip())
        return out

    def print(self) -> None:
        for line in self.lines(terminal_width()):
            echo(line)


GAP = "   "


@contextlib.contextmanager
def status_line(label: str, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr (``label: message``) for long work, on a terminal only;
    yields the function that updates it."""
    if not enabled or not sys.stderr.isatty() or config.quiet():
        yield lambda message: None
        return
    from rich.console import Console

    with Console(stderr=True).status(f"{label}: starting") as status:
        yield lambda message: status.update(f"{label}: {message}")


def terminal_width() -> int | None:
    """The terminal's width when stdout is one (COLUMNS wins), else None (a pipe: no limit)."""
    if not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def fit_widths(widths: list[int], minimum: list[int], total: int, gap: int) -> list[int]:
    """Column widths whose line fits ``total`` characters: the widest column gives up one
    character at a time, never below its heading's width or 8 characters."""
    widths = list(widths)
    floors = [min(w, max(m, 8)) for w, m in zip(widths, minimum, strict=True)]
    while sum(widths) + gap * (len(widths) - 1) > total:
        room = [w - f for w, f in zip(widths, floors, strict=True)]
        i = max(range(len(widths)), key=lambda k: (room[k] > 0, widths[k]))
        if room[i] <= 0:
            break
        widths[i] -= 1
    return widths


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(*columns: str) -> Table:
    return Table(*columns)


def add_row(t: Table, *cells: str) -> None:
    t.add_row(*cells)


def print_key_values(rows: list[tuple[str, str]], indent: str = "") -> None:
    """Label / value lines, the values aligned."""
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        echo(f"{indent}{k.ljust(width)}  {v}".rstrip())
