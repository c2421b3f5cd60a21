"""`cairn.lock`: the versions a repository's code was written against.

`cairn pin data:latest` resolves the alias once and writes the answer next to the code; from
then on `run.use_artifact("data:latest")` in that repository gets the pinned version, whatever
`latest` points at today, until `cairn pin --update` moves the pin. This is what `dvc import`
gives DVC users: the data a commit of the code means is part of the commit.

The file is JSON (sorted keys, one pin per key), meant to be committed::

    {"cairn": "lock", "v": 1,
     "pins": {"demo/data:latest": {"version": "v3", "digest": "blake3:...", "type": "dataset",
                                   "pinned_at": "2026-12-04T18:00:00+00:00"}}}

Which file: ``CAIRN_LOCK`` when set (a path; ``off`` ignores every lock file), else the first
``cairn.lock`` found from the working directory upwards, stopping at the repository's root
(the folder holding ``.git``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cairn import config
from cairn.core import names
from cairn.errors import ConflictError, InvalidInputError

LOCK_NAME = "cairn.lock"
FORMAT = {"cairn": "lock", "v": 1}


@dataclass(frozen=True)
class Pin:
    """One pinned reference: ``project/name:alias`` -> a version and its digest."""

    key: str
    version: str
    digest: str
    type: str
    pinned_at: str

    def to_dict(self) -> dict[str, str]:
        return {
            "version": self.version,
            "digest": self.digest,
            "type": self.type,
            "pinned_at": self.pinned_at,
        }


def pin_key(project: str, name: str, ref: str) -> str:
    return f"{project}/{name}:{ref}"


def disabled() -> bool:
    return (config.lock_file() or "").strip().lower() in ("off", "0", "false", "no")


def find(start: Path | None = None) -> Path | None:
    """The lock file in force (see the module's docstring), or None."""
    if disabled():
        return None
    named = config.lock_file()
    if named:
        return Path(named).expanduser().absolute()
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / LOCK_NAME).is_file():
            return candidate / LOCK_NAME
        if (candidate / ".git").exists():
            return None
    return None


def default_path(start: Path | None = None) -> Path:
    """Where `cairn pin` writes a new lock file: the one in force, else the repository's root,
    else the working directory."""
    found = find(start)
    if found is not None:
        return found
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate / LOCK_NAME
    return folder / LOCK_NAME


def load(path: Path) -> dict[str, Pin]:
    """The pins of a lock file; a missing file has none, a damaged one is a clear error."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"{path} is not a readable Cairn lock file ({exc}); fix or delete it, then run "
            "'cairn pin NAME:ALIAS' again"
        ) from None
    if not isinstance(data, dict) or data.get("cairn") != "lock" or data.get("v") != 1:
        raise InvalidInputError(
            f"{path} is not a Cairn lock file (version 1); fix or delete it, then run "
            "'cairn pin NAME:ALIAS' again"
        )
    pins: dict[str, Pin] = {}
    for key, entry in (data.get("pins") or {}).items():
        try:
            pins[key] = Pin(
                key=key,
                version=str(entry["version"]),
                digest=str(entry["digest"]),
                type=str(entry.get("type", "")),
                pinned_at=str(entry.get("pinned_at", "")),
            )
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"{path}: the pin {key!r} has no version or digest; run 'cairn pin {key}' again"
            ) from None
    return pins


def save(path: Path, pins: dict[str, Pin]) -> None:
    """Write the lock file atomically (a reader never sees half of it)."""
    body = {**FORMAT, "pins": {k: pins[k].to_dict() for k in sorted(pins)}}
    text = json.dumps(body, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pinned(project: str, name: str, ref: str) -> tuple[Path, Pin] | None:
    """The pin that applies to ``project/name:ref`` (never to an explicit ``vN`` or digest)."""
    if ref.startswith("blake3:") or names.is_version_label(ref):
        return None
    path = find()
    if path is None:
        return None
    pin = load(path).get(pin_key(project, name, ref))
    return (path, pin) if pin is not None else None


def check_digest(path: Path, pin: Pin, digest: str) -> None:
    """A pinned version that holds other content than when it was pinned (another store, or a
    rewritten one) is refused rather than used."""
    if digest != pin.digest:
        raise ConflictError(
            f"{path} pins {pin.key} to {pin.version} ({pin.digest}), but {pin.version} here "
            f"is {digest}: this store is not the one the pin was made against; run "
            f"'cairn pin --update {pin.key}' to pin what this store holds"
        )
