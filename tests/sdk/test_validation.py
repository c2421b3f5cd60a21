"""Bad input refused before the store or the database is involved: names, paths, modes,
metadata and folders with symlink loops. These checks run in the SDK itself, so they run once
(embedded on SQLite) rather than on every backend."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sdk_helpers import NOT_JSON, write

import cairn
from cairn.core import names
from cairn.core.digest import is_digest
from cairn.errors import (
    ArtifactNotFoundError,
    CairnError,
    FileChangedError,
    IntegrityError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidPathError,
    RunFinishedError,
    SourceFileError,
)
from cairn.service.accounts import check_user_name
from cairn.service.validate import check_text


@pytest.fixture(params=["sqlite"])
def backend_mode(request: pytest.FixtureRequest) -> str:
    """Only one backend: nothing here reaches it."""
    return str(request.param)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write(tmp_path / "data" / "a.csv", "1,2\n")


BAD_NAMES = ["a b", "", "../x", "x:y", "a/b", "-x", ".hidden", "x" * 129, "tab\t", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_artifact_names_and_types(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"invalid artifact name.*letters, digits"):
        cairn.Artifact(name, type="dataset")
    with pytest.raises(InvalidNameError, match=r"invalid artifact type.*letters, digits"):
        cairn.Artifact("fine", type=name)


@pytest.mark.parametrize("name", ["/etc/passwd", "/x", "../x", "a/../../b", "a//b", "./a", "a/."])
def test_paths_that_would_escape_the_artifact(data: Path, name: str) -> None:
    art = cairn.Artifact("ds", type="dataset")
    with pytest.raises(InvalidPathError, match=r"absolute|'\.\.' segment"):
        art.add_file(data, name=name)
    with pytest.raises(InvalidPathError, match=r"absolute|'\.\.' segment"):
        art.add_dir(data.parent, name=name)
    with pytest.raises(InvalidPathError, match=r"absolute|'\.\.' segment"), art.new_file(name):
        pass
    assert art.files() == []


@pytest.mark.parametrize("case", sorted(NOT_JSON))
def test_metadata_that_is_not_json_is_refused_when_the_draft_is_made(case: str) -> None:
    metadata = NOT_JSON[case]
    with pytest.raises(InvalidMetadataError, match="metadata"):
        cairn.Artifact("ds", type="dataset", metadata=metadata)


def test_a_symlink_loop_inside_add_dir(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    write(folder / "sub" / "a.txt", "a")
    os.symlink(folder, folder / "sub" / "back-up")  # leads back to a folder above it
    art = cairn.Artifact("ds", type="dataset")
    with pytest.raises(SourceFileError, match=r"symlink loop.*remove it") as info:
        art.add_dir(folder)
    assert info.value.path == str(folder / "sub" / "back-up")
    assert art.files() == []

    (folder / "sub" / "back-up").unlink()
    os.symlink("self", folder / "self")  # a link to itself: ELOOP
    with pytest.raises(SourceFileError, match="symlink loop"):
        art.add_dir(folder)
    (folder / "self").unlink()
    os.symlink(tmp_path / "nowhere", folder / "dangling")
    with pytest.raises(SourceFileError, match="does not exist"):
        art.add_dir(folder)
    (folder / "dangling").unlink()
    # a symlink to a folder elsewhere is followed
    write(tmp_path / "elsewhere" / "b.txt", "b")
    os.symlink(tmp_path / "elsewhere", folder / "linked")
    art.add_dir(folder)
    assert [f.path for f in art.files()] == ["linked/b.txt", "sub/a.txt"]


@pytest.mark.parametrize("mode", ["r", "rb", "w+", "a", "q"])
def test_new_file_only_writes(mode: str) -> None:
    art = cairn.Artifact("ds", type="dataset")
    with (
        pytest.raises(InvalidInputError, match="mode 'w' \\(text\\) or 'wb'"),
        art.new_file("x.txt", mode=mode),
    ):
        pass
    assert art.files() == []


def test_every_error_is_a_cairn_error() -> None:
    for error in (
        InvalidNameError,
        InvalidPathError,
        InvalidMetadataError,
        ArtifactNotFoundError,
        SourceFileError,
        FileChangedError,
        IntegrityError,
        RunFinishedError,
    ):
        assert issubclass(error, CairnError)


# -- names with a control character (a trailing newline above all) -------------------------
# The checks are full matches; a pattern anchored with '$' also accepts a trailing newline.

# every character that is not printed as itself: C0 and C1 controls, DEL, separators, bidi
CONTROL = sorted(
    {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Zl", "Zp")}
    | set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
GOOD_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", fullmatch=True)

# (kind, checker) for every kind of name, each checked with a name that is valid as it stands
STRICT: list[tuple[str, Callable[[str], object]]] = [
    ("project name", names.check_project),
    ("artifact name", names.check_artifact_name),
    ("artifact type", names.check_type),
    ("tag", names.check_tag),
    ("alias", lambda n: names.check_alias("a" + n)),  # 'a...' is never 'latest' nor 'vN'
    ("user name", check_user_name),
    ("reference", names.parse_ref),
    ("reference alias", lambda n: names.parse_ref("ds:a" + n)),
    ("reference project", lambda n: names.parse_ref(n + "/ds:v1")),
]
FREE_TEXT = [("run name", lambda n: check_text("run name", n))]


def _with(name: str, char: str, where: float) -> str:
    at = round(where * len(name))
    return name[:at] + char + name[at:]


@pytest.mark.parametrize(
    ("kind", "check"), STRICT + FREE_TEXT, ids=lambda v: v if isinstance(v, str) else "check"
)
@settings(max_examples=100, deadline=None)
@given(name=GOOD_NAME, char=st.sampled_from(CONTROL), where=st.floats(0, 1))
@example(name="data", char="\n", where=1.0)
@example(name="data", char="\r", where=1.0)
@example(name="data", char="\x00", where=1.0)
def test_a_control_character_anywhere_is_refused(
    kind: str, check: Callable[[str], object], name: str, char: str, where: float
) -> None:
    check(name)  # valid as it stands
    with pytest.raises(InvalidNameError):
        check(_with(name, char, where))


@pytest.mark.parametrize("value", ["v1\n", "v0\n", "latest\n"])
def test_version_labels_and_digests_are_full_matches(value: str) -> None:
    assert not names.is_version_label(value)
    assert not is_digest("blake3:" + "0" * 64 + "\n")
    with pytest.raises(InvalidNameError):
        names.parse_ref("ds:" + value)
