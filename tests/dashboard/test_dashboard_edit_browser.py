"""The run charts, the edits (metadata, run notes, deleting a version) and the archive downloads
in a real headless Chromium, against a real `cairn server` (its Content-Security-Policy and
all) in open mode, with data logged through the server's API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cairn
import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread

    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", store=tmp_path / "server-store"
    )
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    with ServerThread(settings) as running:
        monkeypatch.setenv("CAIRN_URL", running.url)
        reset_backends()
        yield running
        reset_backends()


@pytest.fixture
def page(browser: Any, server: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    p = context.new_page()
    p.set_default_timeout(10_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    # a refusal page's status (400, 409) is logged too: that is the page answering, no error
    answered = "Failed to load resource: the server responded with a status of"
    p.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith(answered)
            else None
        ),
    )
    yield p
    context.close()
    assert not errors, f"JavaScript or Content-Security-Policy errors: {errors}"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_run_page_shows_a_chart_per_logged_metric(page: Any, server: Any) -> None:
    with cairn.init(project="vision", job_type="train", config={"lr": 0.1}) as run:
        for step in range(25):
            run.log({"loss": 2.0 / (step + 1), "acc": step / 25})
        run_id = run.id
    page.goto(f"/p/vision/r/{run_id}")
    cards = page.locator("#charts figure.chart-card")
    expect(cards).to_have_count(2)
    expect(cards.nth(0)).to_contain_text("acc")
    loss = page.locator("figure[data-metric=loss]")
    expect(loss).to_contain_text("last 0.08")
    line = loss.locator("svg.chart polyline.line")
    expect(line).to_be_visible()
    box = loss.locator("svg.chart").bounding_box()
    assert box["width"] > 250 and box["height"] > 80
    # the line runs from the top left (loss 2 at step 0) to the bottom right
    first, last = line.evaluate(
        "l => [l.points[0], l.points[l.points.numberOfItems - 1]].map(p => [p.x, p.y])"
    )
    assert first[0] < last[0] and first[1] < last[1]
    expect(loss.locator("svg.chart circle")).to_have_count(25)
    expect(page.locator("#config")).to_contain_text("lr")
    expect(page.locator("#summary")).to_contain_text("loss")


def log_two_versions(tmp_path: Path) -> str:
    """vision/images v0 (alias 'stable', metadata) and v1, through the server; the run's id."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "rows.csv").write_text("a,b\n1,2\n")
    with cairn.init(project="vision", job_type="prepare") as run:
        art = cairn.Artifact("images", type="dataset", metadata={"rows": 1, "Source": "cam"})
        art.add_dir(folder)
        run.log_artifact(art, aliases=["stable"])
        run_id = run.id
    (folder / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    with cairn.init(project="vision", job_type="prepare") as run:
        art = cairn.Artifact("images", type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)
    return run_id


def test_metadata_json_editor_validates_in_the_browser(
    page: Any, server: Any, tmp_path: Path
) -> None:
    log_two_versions(tmp_path)
    page.goto("/p/vision/a/images/v/v0")
    expect(page.locator("#metadata-form")).to_be_hidden()
    page.locator("#edit-metadata").click()
    area = page.locator("#metadata-form textarea")
    expect(area).to_be_visible()
    expect(page.locator("#metadata-view")).to_be_hidden()
    assert '"Source": "cam"' in area.input_value()

    error = page.locator("#metadata-error")
    area.fill('{"rows": 2,')
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not valid JSON")
    page.get_by_role("button", name="Save metadata").click()  # refused in the page: not sent
    expect(page.locator(".flash")).to_have_count(0)
    expect(area).to_be_focused()
    area.fill("[1, 2]")
    expect(error).to_have_text("The metadata must be a JSON object ({...}), not a list.")
    assert area.evaluate("a => a.validity.valid") is False
    area.fill('{"rows": 2, "Source": "cam", "source": "lower case is another key"}')
    expect(error).to_be_hidden()
    page.get_by_role("button", name="Save metadata").click()
    expect(page.locator(".flash")).to_have_text("Metadata saved.")
    expect(page.locator("#metadata-view")).to_contain_text("lower case is another key")
    expect(page.locator("#metadata-view")).to_contain_text("Source")

    # with the page's check bypassed, the server refuses and keeps the text
    page.locator("#edit-metadata").click()
    area.evaluate("a => { a.value = '{\"rows\": 3'; a.removeAttribute('data-json-object'); }")
    page.get_by_role("button", name="Save metadata").click()
    expect(page.locator("#metadata-error")).to_contain_text("Not saved: not valid JSON")
    expect(page.locator("#metadata-form textarea")).to_have_value('{"rows": 3')
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#metadata-view")).to_contain_text("lower case is another key")

    page.locator("nav.tabs a[data-tab=history]").click()
    expect(page.locator("table.history")).to_contain_text("lower case is another key")


def test_run_notes_edit(page: Any, server: Any, tmp_path: Path) -> None:
    run_id = log_two_versions(tmp_path)
    page.goto(f"/p/vision/r/{run_id}")
    expect(page.locator("#notes-view")).to_have_text("No notes.")
    page.locator("#edit-notes").click()
    page.locator("#notes-form textarea").fill("Camera **two** was off.")
    page.get_by_role("button", name="Save notes").click()
    expect(page.locator(".flash")).to_have_text("Notes saved.")
    expect(page.locator("#notes-view strong")).to_have_text("two")
    page.locator("#edit-notes").click()
    page.locator("#notes-form textarea").fill("discarded")
    page.locator("#notes-form").get_by_role("button", name="Cancel").click()
    expect(page.locator("#notes-form")).to_be_hidden()
    expect(page.locator("#notes-view")).to_contain_text("Camera two was off.")


def test_delete_a_version_with_an_alias(page: Any, server: Any, tmp_path: Path) -> None:
    log_two_versions(tmp_path)
    page.goto("/p/vision/a/images/v/v0")
    page.locator("#delete summary").click()
    expect(page.locator("#delete-aliases")).to_contain_text("stable")
    confirm = page.get_by_label("Type v0 to confirm")
    delete = page.get_by_role("button", name="Delete v0")
    confirm.fill("v1")
    delete.click()  # the browser refuses a wrong name (pattern): nothing is sent
    assert confirm.evaluate("i => i.validity.patternMismatch") is True
    expect(page.locator(".flash")).to_have_count(0)
    confirm.fill("v0")
    delete.click()  # the alias: refused as `cairn artifact rm` refuses it without --force
    expect(page.locator(".flash")).to_contain_text("Not deleted: images:v0 has aliases stable")
    expect(page.locator(".head-aliases")).to_contain_text("stable")

    page.locator("#delete summary").click()
    page.get_by_label("also drop its aliases").check()
    page.get_by_label("Type v0 to confirm").fill("v0")
    page.get_by_role("button", name="Delete v0").click()
    expect(page).to_have_url(re.compile(r"/p/vision/a/images$"))
    expect(page.locator(".flash")).to_contain_text("Deleted images:v0 and dropped its aliases")
    expect(page.locator("table.versions tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="v1", exact=True)).to_be_visible()


def test_download_a_version_and_a_folder_as_tar(page: Any, server: Any, tmp_path: Path) -> None:
    import tarfile

    folder = tmp_path / "images"
    files = {"labels.csv": b"a,b\n1,2\n", "train/cat.png": bytes(range(256)) * 40}
    files["train/deep/dog.txt"] = b"woof\n"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    with cairn.init(project="vision") as run:
        art = cairn.Artifact("images", type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)

    def download(link: Any) -> dict[str, bytes]:
        with page.expect_download() as waiting:
            link.click()
        saved = tmp_path / waiting.value.suggested_filename
        waiting.value.save_as(saved)
        with tarfile.open(saved) as tar:
            out = {}
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
        return out

    page.goto("/p/vision/a/images/v/v0/files")
    link = page.get_by_role("link", name="Download all (.tar)")
    assert download(link) == files
    row = page.locator("tr.dir", has=page.get_by_role("link", name="train/"))
    got = download(row.get_by_role("link", name="Download .tar"))
    assert got == {k: v for k, v in files.items() if k.startswith("train/")}
    page.get_by_role("link", name="train/").click()
    got = download(page.get_by_role("link", name="Download folder (.tar)"))
    assert list(got) == ["train/cat.png", "train/deep/dog.txt"]


def test_bytes_added_on_the_version_page_and_versions_list(
    page: Any, server: Any, tmp_path: Path
) -> None:
    log_two_versions(tmp_path)  # v1 changes rows.csv: a new blob and a new folder listing
    page.goto("/p/vision/a/images/v/v1")
    added = page.locator("#added-bytes")
    expect(added).to_be_visible()
    expect(added).to_have_text(re.compile(r"^\+\d+ B added to the store$"))
    title = added.get_attribute("title")
    assert "no earlier live version of this artifact holds" in title
    expect(page.locator("#added-detail")).to_contain_text("new to this artifact")
    page.goto("/p/vision/a/images")
    head = page.locator("table.versions th", has_text="Added")
    assert "A 1 MiB change in a large checkpoint adds about 1 MiB" in head.get_attribute("title")
    expect(page.locator("table.versions td.added")).to_have_count(2)
    expect(page.locator("table.versions td.added").first).to_have_text(re.compile(r"^\+\d+ B$"))
