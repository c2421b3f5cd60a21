"""The artifact page's versions table in a real headless Chromium: metadata columns chosen in
the columns picker (kept in the URL), sorting by a click on a column header (server side, in
the filter box's sort language), and the artifact's own description rendered; plus the pure
helpers of cairn.dashboard.columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import LiveServer, open_backend
from registry_world import World, browser_page, running_world

from cairn.dashboard import columns, create_dashboard_app


@pytest.fixture(scope="module")
def live(seeded_home: Path) -> Iterator[LiveServer]:
    backend = open_backend(seeded_home)
    with LiveServer(create_dashboard_app(backend)) as server:
        yield server
    backend.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 860})
    p = context.new_page()
    p.set_default_timeout(10_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def versions_shown(page: Any) -> list[str]:
    return [
        t.strip() for t in page.locator("table.versions tbody tr td:first-child").all_inner_texts()
    ]


def test_choose_metadata_columns_and_sort_by_a_header(page: Any) -> None:
    page.goto("/p/demo/a/samples")
    table = page.locator("table.versions")
    expect(table.locator("th.meta-col")).to_have_count(0)
    page.locator("#columns-picker summary").click()
    picker = page.locator("#columns-picker")
    expect(picker.get_by_label("variant")).to_be_visible()
    expect(picker.get_by_label("source.site")).to_be_visible()  # nested keys, dotted
    picker.get_by_label("variant").check()
    picker.get_by_label("source.year").check()
    picker.get_by_role("button", name="Show columns").click()
    expect(page).to_have_url(re.compile(r"col=source\.year"))
    expect(page).to_have_url(re.compile(r"col=variant"))
    expect(table.locator("th.meta-col")).to_have_text(["source.year", "variant"])
    assert versions_shown(page) == ["v1", "v0"]  # newest first
    expect(table.locator("tbody tr").first.locator("td[data-col=variant]")).to_have_text("2")
    expect(table.locator("tbody tr").first.locator("td[data-col='source.year']")).to_have_text(
        "2024"
    )

    # a click on a header sorts by it on the server (in the sort box's language), then reverses
    table.get_by_role("link", name="variant").click()
    expect(page).to_have_url(re.compile(r"sort=metadata\.variant"))
    expect(page.get_by_label("Sort versions")).to_have_value("metadata.variant")
    expect(table.locator("th[aria-sort=ascending]")).to_have_text(re.compile("variant"))
    assert versions_shown(page) == ["v0", "v1"]
    table.get_by_role("link", name="variant").click()
    expect(page.get_by_label("Sort versions")).to_have_value("-metadata.variant")
    expect(table.locator("th[aria-sort=descending]")).to_have_text(re.compile("variant"))
    assert versions_shown(page) == ["v1", "v0"]
    expect(table.locator("th.meta-col")).to_have_count(2)  # the columns are kept

    table.get_by_role("link", name="Version").click()  # newest first, then oldest first
    expect(page.get_by_label("Sort versions")).to_have_value("-version")
    assert versions_shown(page) == ["v1", "v0"]
    table.get_by_role("link", name="Version").click()
    expect(page.get_by_label("Sort versions")).to_have_value("version")
    assert versions_shown(page) == ["v0", "v1"]

    # the filter box keeps the columns too
    page.get_by_role("searchbox", name="Filter versions").fill("metadata.variant = 2")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"where=metadata\.variant"))
    assert versions_shown(page) == ["v1"]
    expect(table.locator("th.meta-col")).to_have_text(["source.year", "variant"])

    # the address is the view: another browser tab opening it sees the same table
    shared = page.url
    other = page.context.new_page()
    other.goto(shared)
    expect(other.locator("table.versions th.meta-col")).to_have_text(["source.year", "variant"])
    other.close()

    page.locator("#columns-picker summary").click()
    page.get_by_role("link", name="No metadata columns").click()
    expect(table.locator("th.meta-col")).to_have_count(0)
    expect(page).not_to_have_url(re.compile(r"col="))
    assert versions_shown(page) == ["v1"]  # the filter stays


def test_a_missing_value_and_a_key_no_version_has(page: Any) -> None:
    page.goto("/p/demo/a/samples?col=variant&col=nothing.here")
    table = page.locator("table.versions")
    expect(table.locator("th.meta-col")).to_have_text(["variant", "nothing.here"])
    cells = table.locator("td[data-col='nothing.here']")
    expect(cells).to_have_count(2)
    expect(cells.first).to_have_text("—")
    page.locator("#columns-picker summary").click()
    expect(page.locator("#columns-picker").get_by_label("nothing.here")).to_be_checked()


def test_the_artifact_description_rendered_and_edited(page: Any) -> None:
    page.goto("/p/demo/a/training-data")
    view = page.locator("#artifact-description-view")
    expect(view.locator("code")).to_have_text("examples/pipeline.py")  # Markdown, rendered
    expect(view).not_to_contain_text("`")

    # in the project's list: the text of the Markdown, without its marks
    page.goto("/p/demo")
    row = page.locator("tr", has=page.get_by_role("link", name="training-data", exact=True))
    expect(row.locator("td.desc")).to_have_text(
        "Synthetic two-class data. Generated by examples/pipeline.py."
    )

    page.goto("/p/demo/a/eval-report")
    page.locator("#edit-artifact-description").click()
    area = page.get_by_label("Artifact description (Markdown)")
    expect(area).to_be_visible()
    expect(page.locator("#artifact-description-view")).to_be_hidden()
    area.fill("## Report\n\nAccuracy of the **candidate** model.")
    page.locator("#artifact-description-form").get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_have_text("Description saved.")
    expect(page).to_have_url(re.compile(r"/p/demo/a/eval-report$"))
    expect(page.locator("#artifact-description-view h2")).to_have_text("Report")
    expect(page.locator("#artifact-description-view strong")).to_have_text("candidate")
    page.reload()  # the page reads it again: what was saved, not an older copy
    expect(page.locator("#artifact-description-view strong")).to_have_text("candidate")


@pytest.fixture(params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with running_world(request, tmp_path, monkeypatch) as running:
        yield running


def test_columns_sort_and_description_through_a_server(world: World, browser: Any) -> None:
    """On a real `cairn server` over SQLite and PostgreSQL: vision/clf v0..v2 have acc 0.8,
    0.85 and 0.9; vera reads the project, otto administers it."""
    with browser_page(browser, world, "vera") as page:
        page.goto("/p/vision/a/clf?col=acc")
        table = page.locator("table.versions")
        expect(table.locator("td[data-col=acc]")).to_have_text(["0.9", "0.85", "0.8"])
        table.get_by_role("link", name="acc").click()
        expect(page).to_have_url(re.compile(r"sort=metadata\.acc"))
        assert versions_shown(page) == ["v0", "v1", "v2"]
        table.get_by_role("link", name="acc").click()
        assert versions_shown(page) == ["v2", "v1", "v0"]
        expect(table.locator("td[data-col=acc]")).to_have_text(["0.9", "0.85", "0.8"])
        expect(page.locator("#edit-artifact-description")).to_have_count(0)  # read only
    with browser_page(browser, world, "otto") as page:
        page.goto("/p/vision/a/clf?col=acc&sort=-metadata.acc")
        page.locator("#edit-artifact-description").click()
        page.get_by_label("Artifact description (Markdown)").fill("Weights of *clf*.")
        page.locator("#artifact-description-form").get_by_role("button", name="Save").click()
        expect(page.locator("#artifact-description-view em")).to_have_text("clf")


def test_metadata_keys_are_dotted_and_sorted() -> None:
    found = columns.metadata_keys(
        [{"acc": 0.9, "source": {"site": "x", "year": 1}}, {"Loss": 1, "empty": {}}]
    )
    assert found == ["acc", "empty", "Loss", "source.site", "source.year"]
    assert columns.metadata_keys([{"a": {"b": {"c": {"d": {"e": 1}}}}}]) == ["a.b.c.d"]


def test_value_at_and_missing() -> None:
    meta = {"a": {"b": 2}, "x.y": 3, "n": None}
    assert columns.value_at(meta, "a.b") == 2
    assert columns.value_at(meta, "x.y") == 3
    assert columns.value_at(meta, "n") is None
    assert columns.is_missing(columns.value_at(meta, "a.c"))
    assert columns.is_missing(columns.value_at(meta, "n.m"))


def test_header_sorts() -> None:
    assert columns.chosen([" acc", "", "acc", "loss"]) == ["acc", "loss"]
    assert len(columns.chosen([f"k{i}" for i in range(50)])) == columns.MAX_COLUMNS
    assert columns.sort_field("acc") == "metadata.acc"
    assert columns.sort_field("two words") is None
    assert columns.sort_field("a$b") is None
    assert columns.sort_state("-metadata.acc, version", "metadata.acc") == "descending"
    assert columns.sort_state("metadata.acc", "metadata.acc") == "ascending"
    assert columns.sort_state("version, metadata.acc", "metadata.acc") == ""
    assert columns.next_sort("", "metadata.acc") == "metadata.acc"
    assert columns.next_sort("metadata.acc", "metadata.acc") == "-metadata.acc"
    assert columns.next_sort("-metadata.acc", "metadata.acc") == "metadata.acc"
    assert columns.next_sort("", "size", descending_first=True) == "-size"
