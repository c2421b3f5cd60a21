"""Webhook pages in a real headless Chromium against a real `cairn server` (SQLite and
PostgreSQL) and a real receiver on loopback: a project admin adds a webhook (its secret shown
once), sends a test event and watches it in the delivery log (a failed attempt, then the retry
that delivered it), and removes it; who may see which webhook pages."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_world import World, browser_page, running_world

from cairn.service.webhooks import SIGNATURE_HEADER, verify

# the real loopback receiver of the server's webhook tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from webhook_receiver import Receiver


@pytest.fixture(params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("CAIRN_WEBHOOK_BACKOFF", "0.5")  # a failed attempt is retried at once
    monkeypatch.setenv("CAIRN_WEBHOOK_POLL", "0.2")
    with running_world(request, tmp_path, monkeypatch) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(answers=[503])  # the first request fails, then 200
    yield found
    found.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_add_test_and_remove_a_webhook(world: World, browser: Any, receiver: Receiver) -> None:
    with browser_page(browser, world, "otto") as page:  # otto administers project vision
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto("/p/vision")
        page.locator("nav.tabs").get_by_role("link", name="Webhooks").click()
        expect(page).to_have_url(re.compile(r"/p/vision/webhooks$"))
        expect(page.locator(".empty")).to_have_text("No webhooks yet.")

        page.get_by_label("Webhook URL").fill(receiver.url)
        page.get_by_label("webhook.test").check()
        page.get_by_role("button", name="Add webhook").click()
        expect(page).to_have_url(re.compile(r"/p/vision/webhooks$"))
        flash = page.locator(".flash").inner_text()
        secret = re.findall(r"shown only now: (whsec_\S+)", flash)[0]
        row = page.locator("table.webhooks tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(receiver.url)
        expect(row).to_contain_text("webhook.test")
        page.reload()  # shown once: not on the next visit, and no second webhook
        expect(page.locator(".flash")).to_have_count(0)
        expect(row).to_have_count(1)

        row.get_by_role("link", name=receiver.url).click()
        expect(page).to_have_url(re.compile(r"/webhooks/\d+$"))
        expect(page.locator(".empty")).to_contain_text("No deliveries yet")
        page.get_by_role("button", name="Send a test event").click()
        expect(page.locator(".flash")).to_contain_text("Test event queued")

        # the receiver answers 503 first: the log shows the failed attempt, then the retry
        delivery = page.locator("table.deliveries tbody tr").first
        expect(delivery).to_have_attribute("data-status", "delivered", timeout=30_000)
        expect(delivery).to_have_attribute("data-event", "webhook.test")
        expect(delivery.locator("td.num").first).to_have_text("2")  # attempts
        expect(delivery.locator("td.status-code")).to_have_text("200")
        expect(delivery).to_contain_text(" ms")
        attempts = delivery.locator("ol.attempts li")
        expect(attempts).to_have_count(2)
        expect(attempts.nth(0)).to_contain_text("HTTP 503")
        expect(attempts.nth(1)).to_contain_text("HTTP 200")

        # what the receiver got: the test event, signed with the secret shown once
        got = receiver.wait_for(2)
        assert [r.event["type"] for r in got] == ["webhook.test", "webhook.test"]
        assert got[0].headers["idempotency-key"] == got[1].headers["idempotency-key"]
        assert verify(secret, got[1].body, got[1].headers[SIGNATURE_HEADER.lower()])

        page.get_by_role("button", name="Remove").click()
        expect(page).to_have_url(re.compile(r"/p/vision/webhooks$"))
        expect(page.locator(".flash")).to_contain_text("removed")
        expect(page.locator("table.webhooks")).to_have_count(0)


def test_who_sees_webhook_pages(world: World) -> None:
    with world.web("root") as root:
        added = root.post(
            "/registries/models/webhooks",
            data={"url": "http://127.0.0.1:9/hook", "events": ["alias.moved", "alias.added"]},
        )
        assert added.status_code == 303
        listing = root.get(added.headers["location"])
        assert "whsec_" in listing.text and "alias.moved" in listing.text
        assert "whsec_" not in root.get(added.headers["location"]).text  # once
        registry_hook = int(re.findall(r'id="webhook-(\d+)"', listing.text)[0])
        bad = root.post("/p/vision/webhooks", data={"url": "ftp://example.com/x"})
        assert bad.status_code == 400 and "Could not add it" in bad.text
        assert root.get("/registries/models").text.count('id="registry-webhooks"') == 1
    with world.web("otto") as otto:
        added = otto.post("/p/vision/webhooks", data={"url": "http://127.0.0.1:9/hook"})
        assert added.status_code == 303
        listing = otto.get(added.headers["location"]).text
        project_hook = int(re.findall(r'id="webhook-(\d+)"', listing)[0])
        assert '<span class="chip tag">*</span>' in listing  # no event ticked: all
        assert otto.get(f"/webhooks/{project_hook}").status_code == 200
        # not an admin of registry 'models' (no role there at all)
        assert otto.get("/registries/models/webhooks").status_code == 404
        assert otto.get(f"/webhooks/{registry_hook}").status_code == 404
        # a form sent from another site is refused
        forged = otto.post(
            f"/webhooks/{project_hook}/remove", headers={"origin": "http://evil.example"}
        )
        assert forged.status_code == 403
    with world.web("vera") as vera:  # reads project vision, views registry models
        assert vera.get("/p/vision/webhooks").status_code == 403
        assert "/p/vision/webhooks" not in vera.get("/p/vision").text  # no tab
        assert vera.get("/registries/models/webhooks").status_code == 403
        assert 'id="registry-webhooks"' not in vera.get("/registries/models").text
        for hook in (project_hook, registry_hook):
            assert vera.get(f"/webhooks/{hook}").status_code == 404
            assert vera.post(f"/webhooks/{hook}/test").status_code == 404
            assert vera.post(f"/webhooks/{hook}/remove").status_code == 404
    with world.web("stan") as stan:
        assert stan.get("/p/vision/webhooks").status_code == 404
        assert stan.get("/registries/models/webhooks").status_code == 404
    with world.web("otto") as otto:
        assert otto.get(f"/webhooks/{project_hook}").status_code == 200  # nothing was removed
        assert otto.get("/webhooks/99999999").status_code == 404
        # a value of the wrong kind in the address: a 422 page saying so, not a 500
        for path in ("/webhooks/abc", f"/webhooks/{2**70}", f"/p/vision/a/clf?offset={2**70}"):
            r = otto.get(path)
            assert r.status_code == 422 and "Bad request" in r.text, path
