"""`cairn pin`: write the versions that names resolve to into `cairn.lock`, so that code in
this repository keeps using them (see cairn.sdk.lockfile)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_NOT_FOUND, EXIT_USAGE, JsonOpt, ProjectOpt, fail

if TYPE_CHECKING:
    from cairn.sdk.lockfile import Pin


def pin(
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME[:ALIAS]...",
            help="What to pin, e.g. data:latest or demo/model:production (default alias: "
            "latest). With --update: the pins to move (default: all).",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    update: Annotated[
        bool,
        typer.Option("--update", help="Resolve pinned names again and move their pins."),
    ] = False,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the pins of the names given.")
    ] = False,
    lock: Annotated[
        Path | None,
        typer.Option(
            "--lock",
            metavar="FILE",
            help="The lock file. Default: $CAIRN_LOCK, else the cairn.lock found from here "
            "upwards, else one at the repository's root (or here).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pin names to the versions they resolve to now, in `cairn.lock`.

    `run.use_artifact("data:latest")` then gets the pinned version in this repository until
    `cairn pin --update` moves it. Commit `cairn.lock` with the code. Without names (and
    without --update) the pins are listed.
    """
    from cairn.cli.common import backend
    from cairn.core import names
    from cairn.sdk import lockfile

    path = lock.absolute() if lock is not None else lockfile.default_path()
    pins = lockfile.load(path)
    if update and remove:
        fail("use --update or --remove, not both", EXIT_USAGE)
    if remove:
        if not refs:
            fail("name the pins to remove, e.g. 'cairn pin --remove data:latest'", EXIT_USAGE)
        for ref in refs:
            key = _key(ref, project)
            if pins.pop(key, None) is None:
                fail(
                    f"{path} has no pin {key}; see 'cairn pin' for the pins it has", EXIT_NOT_FOUND
                )
        lockfile.save(path, pins)
        _report(path, pins, [], json_out)
        return
    if update:
        wanted = [_key(r, project) for r in refs] if refs else sorted(pins)
        missing = [k for k in wanted if k not in pins]
        if missing:
            fail(
                f"{path} has no pin {missing[0]}; pin it first with 'cairn pin {missing[0]}'",
                EXIT_NOT_FOUND,
            )
    elif refs:
        wanted = [_key(r, project) for r in refs]
    else:
        _report(path, pins, [], json_out)
        return
    registry = backend().registry
    changed: list[str] = []
    for key in wanted:
        parsed = names.parse_ref(key)
        assert parsed.project is not None
        if parsed.ref.startswith("blake3:") or names.is_version_label(parsed.ref):
            fail(
                f"{key} names a fixed version already; pin an alias, e.g. "
                f"'{parsed.project}/{parsed.name}:latest'",
                EXIT_USAGE,
            )
        info = registry.resolve(parsed.project, parsed.name, parsed.ref)
        old = pins.get(key)
        if old is not None and (old.digest != info.digest or old.version != info.label):
            changed.append(key)
        pins[key] = lockfile.Pin(key, info.label, info.digest, info.type, lockfile.now())
    lockfile.save(path, pins)
    _report(path, pins, changed, json_out)


def _key(ref: str, project: str | None) -> str:
    from cairn.core import names
    from cairn.sdk import lockfile

    parsed = names.parse_ref(ref)
    return lockfile.pin_key(
        output.resolve_project(parsed.project or project), parsed.name, parsed.ref
    )


def _report(path: Path, typed: dict[str, Pin], changed: list[str], json_out: bool) -> None:
    if json_out:
        output.print_json(
            {
                "lock": str(path),
                "pins": {k: typed[k].to_dict() for k in sorted(typed)},
                "changed": changed,
            }
        )
        return
    if not typed:
        output.echo(f"No pins in {path}. Pin a name with 'cairn pin NAME:ALIAS'.")
        return
    t = output.table("NAME", "VERSION", "DIGEST", "PINNED")
    for key in sorted(typed):
        p = typed[key]
        mark = " (moved)" if key in changed else ""
        t.add_row(key, p.version + mark, output.short_digest(p.digest), p.pinned_at)
    t.print()
    output.hint(f"lock file: {path}")
