"""The audit log page in a real headless Chromium against a real `cairn server` (SQLite and
PostgreSQL): server administrators filter it by user, project, action and time, page through
it and export it as JSON lines; everyone else gets a 403. Both tests only read (sign-ins aside):
they share one world per database (`shared_world`, dashboard/conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from registry_world import World, between, browser_page


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def actions(page: Any) -> list[str]:
    return [r.get_attribute("data-action") for r in page.locator("table.audit tbody tr").all()]


def test_only_administrators_read_the_audit_log(world: World) -> None:
    for who in ("vera", "mona", "otto", "stan"):
        with world.web(who) as web:
            page = web.get("/audit")
            assert page.status_code == 403, who
            assert "only server administrators may read the audit log" in page.text
            assert web.get("/audit/export").status_code == 403
            assert 'href="/audit"' not in web.get("/").text  # no link in the top bar
    with httpx_client(world) as anonymous:
        r = anonymous.get("/audit", follow_redirects=False)
        assert r.status_code == 303 and "/login" in r.headers["location"]
    with world.web("root") as root:
        assert 'href="/audit"' in root.get("/").text
        assert root.get("/audit").status_code == 200


def httpx_client(world: World) -> Any:
    import httpx

    return httpx.Client(base_url=world.url, timeout=60)


def test_filter_page_and_export(world: World, browser: Any, tmp_path: Path) -> None:
    registry = world.server.app.state.services.registry
    alias_moves = registry.audit_log(action="collection.alias", limit=1000)
    assert len(alias_moves) >= 4  # production x3, staging added and removed
    with browser_page(browser, world, "root") as page:
        page.goto("/")
        page.locator("nav.sections").get_by_role("link", name="Audit").click()
        expect(page.locator("h1")).to_have_text("Audit log")
        expect(page.locator("table.audit")).to_contain_text("registry.create")

        # by action (a datalist suggests them) and user
        page.get_by_label("Action").fill("collection.alias")
        page.get_by_label("User").fill("root")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"action=collection.alias"))
        expect(page.locator("table.audit tbody tr")).to_have_count(len(alias_moves))
        assert set(actions(page)) == {"collection.alias"}
        expect(page.locator("table.audit")).to_contain_text("models/classifier")

        # the export holds the same entries, as `cairn audit export` writes them
        with page.expect_download() as download:
            page.locator("#export").click()
        saved = tmp_path / "audit.jsonl"
        download.value.save_as(saved)
        lines = [json.loads(line) for line in saved.read_text().splitlines()]
        assert [e["id"] for e in lines] == [e.id for e in alias_moves]
        assert lines[0] == json.loads(json.dumps(alias_moves[0].to_dict(), sort_keys=True))

        # by project, and a prefix of actions
        page.goto("/audit?project=vision&action=version.")
        found = actions(page)
        assert found and all(a.startswith("version.") for a in found)
        assert "version.created" in found and "version.aliases" in found

        # by time: after the last production move only the sign-ins remain
        moves = world.moves["production"]
        page.goto("/audit")
        page.get_by_label("Since (UTC)").fill(between(moves[2], moves[2].replace(year=3000)))
        page.get_by_role("button", name="Filter").click()
        assert set(actions(page)) <= {"session.sign_in"}
        page.get_by_label("Until (UTC)").fill("2000-01-01T00:00:00")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator(".empty")).to_have_text("No entry matches.")

        # a page at a time
        page.goto("/audit?limit=3")
        first = page.locator("table.audit tbody tr").all_inner_texts()
        assert len(first) == 3
        page.get_by_role("link", name="Next →").click()
        expect(page).to_have_url(re.compile(r"offset=3"))
        second = page.locator("table.audit tbody tr").all_inner_texts()
        assert second and second[0] != first[0]

        # a time that cannot be read is a clear 400
        response = page.goto("/audit?since=last+week")
        assert response is not None and response.status == 400
        expect(page.locator(".filter-error")).to_contain_text("date and time")
