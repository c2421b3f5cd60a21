"""The dashboard in a 420 px wide window (a phone held upright), in a real headless Chromium:
no page scrolls sideways; wide tables and the tab bar scroll inside their own box. The narrow
pages are also taken as pictures (three kept in docs/images/narrow-*.png with
CAIRN_DASHBOARD_SCREENSHOTS=1); the checks are on the measured layout, not on pixels."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import LiveServer, open_backend

from cairn.dashboard import create_dashboard_app

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WIDTH = 420
KEPT = {"narrow-artifact.png", "narrow-version.png", "narrow-lineage.png"}  # for docs/images

# picture name, address ("RUN": the first fine-tuning run's page)
PAGES = [
    ("narrow-projects.png", "/"),
    ("narrow-project.png", "/p/demo"),
    ("narrow-runs.png", "/p/demo/runs"),
    ("narrow-artifact.png", "/p/demo/a/samples?col=variant&col=source.year"),
    ("narrow-version.png", "/p/demo/a/training-data/v/v1"),
    ("narrow-files.png", "/p/demo/a/samples/v/v1/files"),
    ("narrow-csv.png", "/p/demo/a/samples/v/v1/files/big.csv"),
    ("narrow-lineage.png", "/p/demo/a/training-data/v/v1/lineage"),
    ("narrow-run.png", "RUN"),
]

# every element's right edge, unless a box that scrolls or clips sideways holds it
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth, out = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.right <= width + 0.5) continue;
    let held = false;
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      const box = p.getBoundingClientRect();
      if (getComputedStyle(p).overflowX !== "visible" && box.right <= width + 0.5) {
        held = true;
        break;
      }
    }
    if (!held) out.push(`${e.tagName.toLowerCase()}.${e.className} ends at ${Math.round(r.right)}`);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def live(seeded_home: Path) -> Iterator[LiveServer]:
    backend = open_backend(seeded_home)
    with LiveServer(create_dashboard_app(backend)) as server:
        yield server
    backend.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, viewport={"width": WIDTH, "height": 800})
    p = context.new_page()
    p.set_default_timeout(10_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def png_size(path: Path) -> tuple[int, int]:
    """The width and height of a PNG file (from its IHDR header)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def run_page(page: Any) -> str:
    page.goto("/p/demo/runs?job_type=fine-tuning")
    page.locator("table.runs tbody tr a.strong").first.click()
    page.wait_for_load_state()
    path: str = page.evaluate("location.pathname")
    assert "/r/" in path
    return path


def test_no_page_scrolls_sideways_at_420px(page: Any, tmp_path: Path) -> None:
    for name, url in PAGES:
        page.goto(run_page(page) if url == "RUN" else url)
        page.wait_for_load_state()
        assert page.evaluate("document.documentElement.clientWidth") == WIDTH
        scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
        assert scroll_width <= WIDTH, f"{url} scrolls sideways: {scroll_width} px wide"
        assert page.evaluate(OVERFLOWING) == [], f"{url} has content past the window's edge"
        main = page.locator("main").bounding_box()
        assert main is not None and main["x"] >= 0 and main["x"] + main["width"] <= WIDTH
        target = tmp_path / name
        page.screenshot(path=str(target), full_page=True)
        width, height = png_size(target)
        assert width == WIDTH, f"{name}: the whole page is {width} px wide"
        assert height >= 400
        if name in KEPT and os.environ.get("CAIRN_DASHBOARD_SCREENSHOTS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_IMAGES / name)


def test_wide_tables_and_tabs_scroll_in_their_own_box(page: Any) -> None:
    page.goto("/p/demo/runs")
    table = page.locator("table.runs")
    sizes = table.evaluate("t => [t.scrollWidth, t.clientWidth]")
    assert sizes[0] > sizes[1], "the runs table is wider than the window: it scrolls in its box"
    table.evaluate("t => { t.scrollLeft = 80; }")
    assert table.evaluate("t => t.scrollLeft") > 0
    assert page.evaluate("window.scrollX") == 0
    box = table.bounding_box()
    assert box is not None and box["x"] + box["width"] <= WIDTH

    page.goto("/p/demo/a/samples/v/v1")
    tabs = page.locator("nav.tabs")
    box = tabs.bounding_box()
    assert box is not None and box["x"] + box["width"] <= WIDTH
    last = tabs.locator("a").last
    last.scroll_into_view_if_needed()
    last.click()  # the last tab is reachable
    page.wait_for_load_state()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= WIDTH

    # the versions table with metadata columns scrolls inside its own box
    page.goto("/p/demo/a/samples?col=variant&col=source.year&col=source.site")
    holder = page.locator(".versions-scroll")
    sizes = holder.evaluate("t => [t.scrollWidth, t.clientWidth]")
    assert sizes[0] > sizes[1]
    assert page.evaluate("document.scrollingElement.scrollWidth") <= WIDTH
