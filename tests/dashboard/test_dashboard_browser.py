"""The dashboard in a real headless Chromium (Playwright), against a real uvicorn server on
127.0.0.1 over a store seeded by cairn.demo.run_demo: click through every page, edit, move an
alias, expand a lineage group, compare, preview a CSV, download, copy a snippet, sign in.

Set CAIRN_DASHBOARD_SCREENSHOTS=1 to also write the screenshots in docs/images/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import LiveServer, StubAccess, open_backend
from dashboard_seed import FAN_OUT, MANY, png

from cairn.dashboard import Viewer, create_dashboard_app

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def live(seeded_home: Path) -> Iterator[LiveServer]:
    backend = open_backend(seeded_home)
    with LiveServer(create_dashboard_app(backend)) as server:
        yield server
    backend.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
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


def test_projects_project_runs_and_storage(page: Any) -> None:
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Projects")
    page.get_by_role("link", name="demo", exact=True).click()
    expect(page).to_have_url(re.compile(r"/p/demo$"))
    for kind in ("dataset", "model", "evaluation"):
        expect(page.locator("section.group h2", has_text=kind)).to_be_visible()
    row = page.locator("tr", has=page.get_by_role("link", name="training-data", exact=True))
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text("2")  # versions

    page.get_by_role("searchbox").fill("pet")
    page.get_by_role("searchbox").press("Enter")
    expect(page.locator("section.group")).to_have_count(1)
    expect(page.get_by_role("link", name="samples", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="classifier", exact=True)).to_have_count(0)

    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("table.runs")).to_contain_text("dataset-creation")
    expect(page.locator("table.runs")).to_contain_text("finished")
    page.locator("table.runs").get_by_role("link", name="sweep").first.click()
    expect(page).to_have_url(re.compile(r"job_type=sweep"))
    expect(page.locator("table.runs tbody tr")).to_have_count(FAN_OUT)
    page.locator("table.runs tbody tr").first.locator("a.strong").click()
    expect(page.locator("#config")).to_contain_text("trial")
    expect(page.locator("#details")).to_contain_text("sweep")
    expect(page.locator("#inputs")).to_contain_text("training-data:v1")

    page.goto("/p/demo")
    page.get_by_role("link", name="Storage", exact=True).click()
    expect(page.locator(".cards")).to_contain_text("Stored")
    expect(page.locator("table.storage")).to_contain_text("samples")


def test_version_overview_edit_description(page: Any) -> None:
    page.goto("/p/demo/a/classifier")
    expect(page.locator("table.versions tbody tr")).to_have_count(2)
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.locator("h1")).to_contain_text("classifier:v1")
    expect(page.locator("#metadata")).to_contain_text("algorithm")
    expect(page.locator("#metadata")).to_contain_text("logreg")
    expect(page.locator("#description-form")).to_be_hidden()

    page.locator("#edit-description").click()
    area = page.locator("#description-form textarea")
    expect(area).to_be_visible()
    area.fill("## Tuned\n\nFine-tuned on the **shifted** data.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_have_text("Description saved.")
    expect(page.locator("#description-view h2")).to_have_text("Tuned")
    expect(page.locator("#description-view strong")).to_have_text("shifted")

    page.locator("nav.tabs a[data-tab=history]").click()
    row = page.locator("table.history tr", has=page.locator(".field-description"))
    expect(row).to_contain_text("Fine-tuned on the **shifted** data.")


def test_move_add_and_remove_aliases(page: Any) -> None:
    page.goto("/p/demo/a/classifier/v/v1")
    expect(page.locator(".head-aliases")).not_to_contain_text("candidate")
    page.locator("button[data-move-alias=candidate]").click()
    expect(page.locator(".flash")).to_contain_text("moved from v0 to v1")
    expect(page.locator(".head-aliases")).to_contain_text("candidate")
    page.goto("/p/demo/a/classifier/v/v0")
    expect(page.locator(".head-aliases")).not_to_contain_text("candidate")

    page.goto("/p/demo/a/classifier/v/v1")
    page.locator("#add-alias input[name=alias]").fill("staging")
    page.locator("#add-alias button").click()
    expect(page.locator(".head-aliases")).to_contain_text("staging")
    page.get_by_role("button", name="Remove alias staging").click()
    expect(page.locator(".flash")).to_contain_text("removed")
    expect(page.locator(".head-aliases")).not_to_contain_text("staging")

    page.locator("#add-tag input[name=tag]").fill("reviewed")
    page.locator("#add-tag button").click()
    expect(page.locator(".head-aliases")).to_contain_text("#reviewed")


def test_files_csv_preview_download_and_copy(page: Any, tmp_path: Path) -> None:
    page.goto("/p/demo/a/samples/v/v1")
    page.locator("nav.tabs a[data-tab=files]").click()
    files = page.locator("table.files")
    expect(files).to_contain_text("big.csv")
    page.get_by_role("link", name="big.csv").click()
    table = page.locator("table.csv")
    expect(table.locator("thead th")).to_have_text(["#", "id", "split", "score", "label", "text"])
    expect(table.locator("tbody tr")).to_have_count(100)
    expect(table.locator("tbody tr").first).to_contain_text("sample number 0")
    expect(page.locator(".preview")).to_contain_text("The first 100 rows")

    page.locator("nav.path a").first.click()
    page.get_by_role("link", name="many/").click()
    expect(page.locator("table.files tbody tr")).to_have_count(100)
    page.get_by_role("link", name="Next →").click()
    expect(page.locator("table.files tbody tr")).to_have_count(MANY - 1 - 100)  # v1 lost one
    expect(page.locator(".pager")).to_contain_text(f"101\u2013{MANY - 1} of {MANY - 1}")

    page.locator("nav.path a").first.click()
    page.get_by_role("link", name="images/").click()
    page.get_by_role("link", name="cats/").click()
    page.get_by_role("link", name="cat-0.png", exact=True).click()  # not its thumbnail
    image = page.locator("img.image-preview")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('img.image-preview').complete")
    assert image.evaluate("img => img.naturalWidth") == 64

    with page.expect_download() as info:
        page.locator(".file-actions").get_by_role("link", name="Download").click()
    target = tmp_path / "cat.png"
    info.value.save_as(target)
    assert info.value.suggested_filename == "cat-0.png"
    assert target.read_bytes() == png(64, 48, (220, 120, 40))

    page.goto("/p/demo/a/samples/v/v1")
    snippet = page.locator("#use .snippet", has_text="Python")
    snippet.get_by_role("button", name="Copy").click()
    expect(snippet.get_by_role("button")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == 'run.use_artifact("demo/samples:v1")'


def test_lineage_expand_group_and_depth(page: Any) -> None:
    page.goto("/p/demo/a/training-data/v/v1")
    page.locator("nav.tabs a[data-tab=lineage]").click()
    graph = page.locator("svg#lineage-graph")
    expect(graph).to_be_visible()
    expect(graph.locator("g.root")).to_contain_text("training-data:v1")
    group = graph.locator("g[data-kind=group]")
    expect(group).to_have_count(1)
    expect(group).to_contain_text(f"{FAN_OUT} sweep runs")  # grouped by job type
    assert graph.locator("g[data-kind=run]").count() <= 3  # upstream runs only

    group.click()
    expect(page).to_have_url(re.compile(r"expand=g[0-9a-f]+"))
    expect(graph.locator("g[data-kind=group]")).to_have_count(0)
    runs = graph.locator("g[data-kind=run]")
    assert runs.count() >= FAN_OUT + 1
    expect(page.locator("text=Expanded groups")).to_be_visible()
    expect(page.locator("a.chip", has_text=f"{FAN_OUT} sweep runs")).to_be_visible()  # words

    page.locator("select#depth").select_option("1")
    expect(page).to_have_url(re.compile(r"depth=1"))
    # depth 1: the run that logged it, the runs that used it (still expanded)
    expect(graph.locator("g[data-kind=version]")).to_have_count(1)
    page.locator("select#direction").select_option("up")
    expect(page).to_have_url(re.compile(r"direction=up"))
    expect(graph.locator("g[data-kind=run]")).to_have_count(1)
    graph.locator("g[data-kind=run]").click()
    expect(page.locator("#outputs")).to_contain_text("training-data:v1")
    expect(page.locator("#code")).to_contain_text("dirty")
    expect(page.locator("#diff pre")).to_contain_text("lr = 0.2")


def test_compare_versions(page: Any) -> None:
    page.goto("/p/demo/a/samples/v/v1")
    page.locator("nav.tabs a[data-tab=compare]").click()
    expect(page.locator("select#compare-with")).to_have_value("v0")
    summary = page.locator(".diff-summary")
    expect(summary).to_contain_text("1 added")
    expect(summary).to_contain_text("1 removed")
    expect(summary).to_contain_text("2 changed")
    rows = page.locator("table.diff-files tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("tr.added")).to_contain_text("images/dogs/dog-1.png")
    expect(page.locator("tr.removed")).to_contain_text("many/item-0000.txt")
    meta = page.locator("table.meta-diff tr.changed")
    expect(meta).to_contain_text("variant")
    page.locator("input[form=compare-other]").fill("v1")
    page.locator("input[form=compare-other]").press("Enter")
    expect(page.locator(".empty")).to_contain_text("Same files")


def test_usage_links_to_runs(page: Any) -> None:
    page.goto("/p/demo/a/training-data/v/v1/usage")
    used = page.locator("#used-by tbody tr")
    expect(used).to_have_count(FAN_OUT + 1)
    used.first.get_by_role("link").click()
    expect(page.locator("#inputs")).to_contain_text("training-data:v1")
    page.go_back()
    page.locator(".card-section", has_text="Logged by").get_by_role("link").click()
    expect(page.locator("#outputs")).to_contain_text("training-data:v1")


def test_sign_in_with_an_api_key(browser: Any, seeded_home: Path) -> None:
    backend = open_backend(seeded_home)
    access = StubAccess()
    access.keys["key-bob"] = Viewer("bob", {"demo": "read"})
    with LiveServer(create_dashboard_app(backend, access)) as server:
        context = browser.new_context(base_url=server.url)
        p = context.new_page()
        p.set_default_timeout(10_000)
        p.goto("/p/demo")
        expect(p).to_have_url(re.compile(r"/login\?next="))
        p.locator("#key").fill("not-a-key")
        p.get_by_role("button", name="Sign in").click()
        expect(p.locator(".error-message")).to_contain_text("not valid")
        p.locator("#key").fill("key-bob")
        p.get_by_role("button", name="Sign in").click()
        expect(p).to_have_url(re.compile(r"/p/demo$"))
        expect(p.locator(".who")).to_contain_text("bob")
        p.goto("/p/demo/a/classifier/v/v1")
        expect(p.locator("#edit-description")).to_have_count(0)  # read access only
        p.get_by_role("button", name="Sign out").click()
        expect(p).to_have_url(re.compile(r"/login"))
        p.goto("/")
        expect(p).to_have_url(re.compile(r"/login"))
        context.close()
    backend.close()


SHOTS = [
    ("project.png", "/p/demo", None),
    ("version-overview.png", "/p/demo/a/training-data/v/v1", None),
    ("files-csv-preview.png", "/p/demo/a/samples/v/v1/files/big.csv", None),
    ("lineage.png", "/p/demo/a/training-data/v/v0/lineage?depth=4", None),
    ("run.png", "/p/demo/runs?job_type=fine-tuning", "table.runs tbody tr a.strong"),
    ("artifact.png", "/p/demo/a/samples?col=variant&col=source.year&sort=-metadata.variant", None),
]


def test_screenshots(page: Any, tmp_path: Path) -> None:
    """The main pages as pictures (docs/images/ with CAIRN_DASHBOARD_SCREENSHOTS=1)."""
    for name, url, click in SHOTS:
        page.goto(url)
        if click:
            page.locator(click).first.click()
            page.wait_for_load_state()
        target = tmp_path / name
        page.screenshot(path=str(target), full_page=False)
        assert target.stat().st_size > 10_000
        if os.environ.get("CAIRN_DASHBOARD_SCREENSHOTS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_IMAGES / name)
