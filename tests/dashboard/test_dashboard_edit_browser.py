"""The run charts, the edits (metadata, run notes, deleting a version) and the archive downloads
in a real headless Chromium, against a real `cairn server` (its Content-Security-Policy and
all) in open mode, with data logged through the server's API."""

from __future__ import annotations

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
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
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
