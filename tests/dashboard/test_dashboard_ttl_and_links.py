"""A version's TTL on its page, in a real Chromium (when it expires, where the TTL comes from,
set by a writer: 30d, none, inherit; a bad duration refused with the forms accepted), and where
the versions of a lineage graph are linked into registries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import LiveServer, open_backend

import cairn
from cairn.dashboard import create_dashboard_app
from cairn.service.retention import Target


@pytest.fixture
def live(tmp_path: Path, cairn_env: Path) -> Iterator[tuple[LiveServer, Any]]:
    (tmp_path / "weights.bin").write_bytes(b"w" * 100)
    with cairn.init(project="ttl", job_type="train") as run:
        run.log_artifact(tmp_path / "weights.bin", name="model", type="model")
    backend = open_backend(cairn_env)
    with LiveServer(create_dashboard_app(backend)) as server:
        yield server, backend
    backend.close()


def test_a_writer_sets_a_version_ttl_on_its_page(
    browser: Any, live: tuple[LiveServer, Any]
) -> None:
    from playwright.sync_api import expect

    server, backend = live
    page = browser.new_page(base_url=server.url)
    page.set_default_timeout(10_000)
    page.goto("/p/ttl/a/model/v/v0")
    row = page.locator("#ttl")
    expect(row).to_contain_text("never")
    page.locator("#ttl-value").fill("30d")
    page.get_by_role("button", name="Set TTL").click()
    expect(page.locator(".flash")).to_contain_text("TTL: 30d (its own)")
    expect(row).to_contain_text("30d (its own)")
    assert (
        backend.retention.ttl(backend.registry.resolve("ttl", "model", "v0").id).ttl == 30 * 86400
    )

    backend.retention.set_policy(Target(project="ttl"), {"ttl_seconds": 7 * 86400})
    page.locator("#ttl-value").fill("inherit")
    page.get_by_role("button", name="Set TTL").click()
    expect(row).to_contain_text("7d (the project's default)")

    page.locator("#ttl-value").fill("soon")
    page.get_by_role("button", name="Set TTL").click()
    expect(page.locator("body")).to_contain_text("bad duration 'soon'")
    page.goto("/p/ttl/a/model/v/v0")
    expect(page.locator("#ttl")).to_contain_text("7d (the project's default)")  # unchanged
    page.close()


def test_the_lineage_graph_shows_where_versions_are_linked(
    live: tuple[LiveServer, Any], tmp_path: Path
) -> None:
    import httpx

    server, _backend = live
    (tmp_path / "report.txt").write_text("ok")
    with cairn.init(project="ttl", job_type="eval") as run:
        run.use_artifact("model:v0")
        run.log_artifact(tmp_path / "report.txt", name="report", type="eval")
    api = cairn.Api()
    api.create_registry("models")
    api.artifact("ttl/model:v0").link("models/classifier", aliases=["production"])
    page = httpx.get(server.url + "/p/ttl/a/report/v/v0/lineage", timeout=30)
    assert page.status_code == 200
    html = page.text
    assert 'class="linked-badge"' in html  # the model's node carries a badge
    assert "linked as models/classifier:v0 (latest, production)" in html
    assert 'href="/registries/models/c/classifier#link-v0"' in html
    section = html[html.index('id="linked-in-graph"') :]
    assert "ttl/model:v0" in section and "models/classifier:v0" in section
    assert "ttl/report:v0 →" not in section  # only linked versions are listed
