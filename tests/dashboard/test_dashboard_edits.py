"""Edits without a browser (FastAPI's TestClient): a version's metadata (server-side
validation: invalid JSON or a non-object changes nothing), a run's notes, and deleting a
version with the refusals of `cairn artifact rm` (an alias needs --force)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import StubAccess, TestClient, open_backend

import cairn
from cairn.dashboard import create_dashboard_app
from cairn.errors import ArtifactNotFoundError
from cairn.sdk.backend import reset_backends

ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def world(cairn_env: Path, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """Project p: artifact 'data' v0 (aliases best; metadata) and v1; a run."""
    folder = tmp_path / "data"
    folder.mkdir()
    with cairn.init(project="p", job_type="prepare") as run:
        (folder / "a.txt").write_text("one\n")
        art = cairn.Artifact("data", type="dataset", metadata={"Rows": 2, "split": {"a": 1}})
        art.add_dir(folder)
        run.log_artifact(art, aliases=["best"])
        run_id = run.id
    with cairn.init(project="p", job_type="prepare") as run:
        (folder / "a.txt").write_text("two\n")
        art = cairn.Artifact("data", type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)
    backend = open_backend(cairn_env)
    yield backend, run_id
    backend.close()
    reset_backends()


def text(response: Any) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)))


def flash(response: Any) -> str:
    from urllib.parse import unquote

    cookie = response.cookies.get("cairn_flash")
    return unquote(cookie) if cookie else ""


def base_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="base" value="([^"]*)"', page)
    assert found
    return html.unescape(found.group(1))


def test_metadata_editor_saves_a_json_object_and_refuses_anything_else(
    world: tuple[Any, str],
) -> None:
    backend, _ = world
    client = TestClient(create_dashboard_app(backend))
    page = client.get("/p/p/a/data/v/v0").text
    # the editor holds the metadata as JSON, and the page the metadata it was opened on
    area = re.search(r'<textarea name="metadata"[^>]*>(.*?)</textarea>', page, re.S)
    assert area and json.loads(html.unescape(area.group(1))) == {"Rows": 2, "split": {"a": 1}}
    base = base_of(page)

    refusals = {
        '{"Rows": 3,}': "not valid JSON: Expecting property name enclosed in double quotes at "
        "line 1, column 12",
        "[1, 2]": "the metadata must be a JSON object ({...}), not a list",
        '"text"': "not a string",
        "7": "not a number",
        "null": "not null",
        "": "the metadata is empty: write {} for no metadata",
        '{"a": NaN}': "NaN is not JSON",
        '{"a": 1, "a": 2}': "key 'a' appears twice in one object",
    }
    for bad, message in refusals.items():
        r = client.post(
            "/p/p/a/data/v/v0/metadata",
            data={"metadata": bad, "base": base},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert r.status_code == 400, bad
        assert message in text(r), (bad, text(r))
        assert "Not saved:" in text(r)
        # the text comes back as typed, to be fixed
        area = re.search(r'<textarea name="metadata"[^>]*>(.*?)</textarea>', r.text, re.S)
        assert area and html.unescape(area.group(1)) == bad
    info = backend.registry.resolve("p", "data", "v0")
    assert info.metadata == {"Rows": 2, "split": {"a": 1}}  # nothing changed
    assert [e.field for e in backend.registry.history(info.id)].count("metadata") == 0

    new = '{\r\n  "Rows": 3,\r\n  "rows": "lower case is another key",\r\n  "split": {"a": 1}\r\n}'
    r = client.post(
        "/p/p/a/data/v/v0/metadata",
        data={"metadata": new, "base": base},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303 and flash(r) == "Metadata saved."
    info = backend.registry.resolve("p", "data", "v0")
    assert info.metadata == {"Rows": 3, "rows": "lower case is another key", "split": {"a": 1}}
    entry = backend.registry.history(info.id)[-1]
    assert entry.field == "metadata" and entry.old == {"Rows": 2, "split": {"a": 1}}

    # saving over metadata changed since the editor was opened is refused (409), text kept
    r = client.post(
        "/p/p/a/data/v/v0/metadata",
        data={"metadata": '{"Rows": 4}', "base": base},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 409
    assert "changed by someone else since you opened the editor" in text(r)
    assert "lower case is another key" in text(r)  # the metadata now, to compare
    assert backend.registry.resolve("p", "data", "v0").metadata["Rows"] == 3
    # the refusal page's form carries no stale base: saving from it replaces the metadata
    assert 'name="base"' not in r.text
    r = client.post(
        "/p/p/a/data/v/v0/metadata",
        data={"metadata": '{"Rows": 4}'},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert backend.registry.resolve("p", "data", "v0").metadata == {"Rows": 4}
    # an unchanged save records nothing
    count = len(backend.registry.history(info.id))
    r = client.post(
        "/p/p/a/data/v/v0/metadata",
        data={"metadata": '{ "Rows": 4 }'},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert flash(r) == "Metadata unchanged." and len(backend.registry.history(info.id)) == count


def test_run_notes_are_edited_in_place(world: tuple[Any, str]) -> None:
    backend, run_id = world
    client = TestClient(create_dashboard_app(backend))
    page = client.get(f"/p/p/r/{run_id}")
    assert "No notes." in text(page) and 'id="notes-form"' in page.text
    r = client.post(
        f"/p/p/r/{run_id}/notes",
        data={"notes": "Re-run with **seed 3**.\r\n"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303 and flash(r) == "Notes saved."
    assert backend.registry.get_run(run_id).notes == "Re-run with **seed 3**.\n"
    page = client.get(f"/p/p/r/{run_id}")
    assert "<strong>seed 3</strong>" in page.text
    # a run of another project is not found through this one
    other = client.post(f"/p/q/r/{run_id}/notes", data={"notes": "x"}, headers=ORIGIN)
    assert other.status_code == 404


def test_delete_version_needs_confirmation_and_force_for_aliases(world: tuple[Any, str]) -> None:
    backend, _ = world
    client = TestClient(create_dashboard_app(backend))
    page = client.get("/p/p/a/data/v/v0")
    assert 'id="delete-form"' in page.text
    assert "It has alias best" in text(page)

    def delete(ref: str, **form: str) -> Any:
        return client.post(
            f"/p/p/a/data/v/{ref}/delete", data=form, headers=ORIGIN, follow_redirects=False
        )

    r = delete("v0")  # not confirmed
    assert r.status_code == 303 and r.headers["location"] == "/p/p/a/data/v/v0#delete"
    assert flash(r) == "Not deleted: type v0 in the box to confirm."
    r = delete("v0", confirm="v1")  # the wrong version named
    assert "Not deleted" in flash(r)
    r = delete("v0", confirm="v0")  # has an alias: as `cairn artifact rm` without --force
    assert flash(r) == (
        "Not deleted: data:v0 has aliases best. Move or remove them first, or tick 'also "
        "drop its aliases' to delete it and drop them."
    )
    assert backend.registry.resolve("p", "data", "v0").aliases == ["best"]

    r = delete("v0", confirm="v0", drop_aliases="true")
    assert r.status_code == 303 and r.headers["location"] == "/p/p/a/data"
    assert flash(r).startswith("Deleted data:v0 and dropped its aliases best.")
    with pytest.raises(ArtifactNotFoundError):
        backend.registry.resolve("p", "data", "v0")
    assert backend.registry.history(backend.registry.resolve("p", "data", "v1").id)
    listing = client.get("/p/p/a/data")
    assert ">v1<" in listing.text and ">v0<" not in listing.text

    # v1 (only 'latest', which is no user alias) goes with the name typed in full
    r = delete("v1", confirm="data:v1")
    assert flash(r).startswith("Deleted data:v1.")


def test_edits_need_write_access_and_a_form_from_the_dashboard(world: tuple[Any, str]) -> None:
    backend, run_id = world
    access = StubAccess()
    client = TestClient(create_dashboard_app(backend, access))
    client.post("/login", data={"key": "key-bob", "next": "/"}, headers=ORIGIN)  # reads p
    page = client.get("/p/p/a/data/v/v0")
    assert page.status_code == 200
    assert 'id="metadata-form"' not in page.text and 'id="delete-form"' not in page.text
    assert 'id="notes-form"' not in client.get(f"/p/p/r/{run_id}").text
    for path, form in (
        ("/p/p/a/data/v/v0/metadata", {"metadata": "{}"}),
        ("/p/p/a/data/v/v0/delete", {"confirm": "v0", "drop_aliases": "true"}),
        (f"/p/p/r/{run_id}/notes", {"notes": "x"}),
    ):
        assert client.post(path, data=form, headers=ORIGIN).status_code == 403, path
    # a writer's form from another site is refused too
    client.post("/login", data={"key": "key-dave", "next": "/"}, headers=ORIGIN)
    evil = {"origin": "http://evil.example"}
    r = client.post("/p/p/a/data/v/v0/delete", data={"confirm": "v0"}, headers=evil)
    assert r.status_code == 403
    assert backend.registry.resolve("p", "data", "v0").metadata["Rows"] == 2
