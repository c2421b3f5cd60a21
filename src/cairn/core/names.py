"""Validation of every user-supplied name and path. Raises InvalidNameError / InvalidPathError."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from cairn.errors import InvalidNameError, InvalidPathError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_RE = re.compile(r"v(0|[1-9][0-9]*)")
RESERVED_ALIASES = ("latest",)
_NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


# bidirectional overrides and isolates: invisible, and they make a name display as another
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a character that is not printed as itself: C0/C1 controls and
    DEL (newline, tab, escape ...), line/paragraph separators, lone surrogates and bidi
    overrides. Free-text names (run names, job types, key labels) refuse them."""
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI for c in value)


def _check(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidNameError(f"invalid {kind} {value!r}: use {_NAME_RULE}")
    return value


def check_project(name: object) -> str:
    return _check("project name", name)


def is_project_name(value: str) -> bool:
    return _NAME_RE.fullmatch(value) is not None


def check_artifact_name(name: object) -> str:
    return _check("artifact name", name)


def check_type(name: object) -> str:
    return _check("artifact type", name)


def check_tag(name: object) -> str:
    return _check("tag", name)


def is_version_label(value: str) -> bool:
    return bool(_VERSION_RE.fullmatch(value))


def check_alias(name: object) -> str:
    alias = _check("alias", name)
    if alias in RESERVED_ALIASES or is_version_label(alias):
        raise InvalidNameError(
            f"alias {alias!r} is set by Cairn itself ('latest' and 'vN' move on their own); "
            "choose another alias such as 'best' or 'production'"
        )
    return alias


def check_path(path: object) -> str:
    """Validate a path inside an artifact and return its normal form ('a/b/c').

    Paths are relative, use '/', and may not contain '.', '..' or empty segments.
    """
    if not isinstance(path, str) or not path:
        raise InvalidPathError(
            f"invalid artifact path {path!r}: give a relative path like 'a/b.csv'"
        )
    if "\x00" in path or "\\" in path:
        raise InvalidPathError(
            f"invalid artifact path {path!r}: use '/' as the separator and no NUL characters"
        )
    if path.startswith("/"):
        raise InvalidPathError(
            f"artifact path {path!r} is absolute: paths inside an artifact are relative, "
            "pass name='...' to choose where the file goes"
        )
    parts = path.split("/")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidPathError(
                f"artifact path {path!r} has an empty, '.' or '..' segment; "
                "paths may not escape the artifact"
            )
    return "/".join(parts)


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference such as ``project/name:alias``; project is None when not given."""

    project: str | None
    name: str
    ref: str

    def __str__(self) -> str:
        prefix = f"{self.project}/" if self.project else ""
        return f"{prefix}{self.name}:{self.ref}"


def parse_ref(text: object, default_ref: str = "latest") -> ArtifactRef:
    """Parse ``[project/]name[:version-or-alias]``."""
    if not isinstance(text, str) or not text:
        raise InvalidNameError(
            f"invalid artifact reference {text!r}: use 'name', 'name:v3', 'name:alias' "
            "or 'project/name:alias'"
        )
    body, sep, ref = text.partition(":")
    if sep and not ref:
        raise InvalidNameError(f"artifact reference {text!r} has an empty version after ':'")
    project: str | None = None
    if "/" in body:
        project, _, name = body.partition("/")
        check_project(project)
    else:
        name = body
    check_artifact_name(name)
    ref = ref or default_ref
    if ref != "latest" and not is_version_label(ref) and not ref.startswith("blake3:"):
        _check("alias", ref)
    return ArtifactRef(project, name, ref)
