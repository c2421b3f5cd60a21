"""Registry pages in a real headless Chromium against a real `cairn server` (SQLite and
PostgreSQL): the list of registries, a registry's collections, a collection's versions (links to
the real versions), the filter box (the CLI's --where language) on collection and artifact
version lists, the alias timeline with "as of", where a version is linked, and who sees what.

The tests that only read share one world per database (`shared_world`, dashboard/conftest.py);
those that change it are marked ``changes_world`` and get a fresh one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from registry_world import World, between, browser_page


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def rows(page: Any) -> list[str]:
    """The collection version (or version) label of each row of the versions table."""
    return [
        t.strip() for t in page.locator("table.versions tbody tr td:first-child").all_inner_texts()
    ]


def test_browse_registry_collection_and_follow_a_link(world: World, browser: Any) -> None:
    with browser_page(browser, world, "vera") as page:
        page.goto("/")
        page.locator("nav.sections").get_by_role("link", name="Registries").click()
        expect(page.locator("h1")).to_have_text("Registries")
        row = page.locator("table.registries tr", has_text="models")
        expect(row).to_contain_text("production")  # protected
        expect(row).to_contain_text("viewer")  # vera's role
        page.get_by_role("link", name="models", exact=True).click()
        expect(page).to_have_url(re.compile(r"/registries/models$"))
        expect(page.locator("#your-role")).to_have_text("viewer")
        expect(page.locator("table.collections")).to_contain_text("3")
        page.get_by_role("link", name="classifier", exact=True).click()
        expect(page).to_have_url(re.compile(r"/registries/models/c/classifier$"))
        assert rows(page) == ["v2", "v1", "v0"]
        v2 = page.locator("#link-v2")
        expect(v2).to_contain_text("production")
        expect(v2).to_contain_text("latest")
        expect(v2).to_contain_text("root")  # linked by
        expect(page.locator("#link-v1 .chip")).to_have_count(0)  # staging was removed
        # the target is a link to the real version
        page.locator("#link-v1").get_by_role("link", name="vision/clf:v1").click()
        expect(page).to_have_url(re.compile(r"/p/vision/a/clf/v/v1$"))
        expect(page.locator("h1")).to_contain_text("clf:v1")
        expect(page.locator("#metadata")).to_contain_text("0.85")


def test_filter_and_sort_collection_and_artifact_versions(world: World, browser: Any) -> None:
    with browser_page(browser, world, "vera") as page:
        page.goto("/registries/models/c/classifier")
        box = page.get_by_role("searchbox", name="Filter versions")
        box.fill("metadata.acc > 0.82")
        box.press("Enter")
        expect(page.locator("table.versions tbody tr")).to_have_count(2)
        assert rows(page) == ["v2", "v1"]
        page.get_by_label("Sort versions").fill("metadata.acc")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"sort=metadata.acc"))
        assert rows(page) == ["v1", "v2"]
        # two clauses joined by 'and', a JSON list value
        box = page.get_by_role("searchbox", name="Filter versions")
        box.fill('tags in ["eval"] and aliases = production')
        box.press("Enter")
        assert rows(page) == ["v2"]
        page.locator("#link-v2").get_by_role("link", name="vision/clf:v2").click()
        expect(page).to_have_url(re.compile(r"/p/vision/a/clf/v/v2$"))

        # a bad filter: a clear message, the box keeps the text, no 500
        response = page.goto("/registries/models/c/classifier?where=metadata.acc+>>+1")
        assert response is not None and response.status == 400
        expect(page.locator(".filter-error")).to_contain_text("cannot read the value")
        expect(page.get_by_role("searchbox", name="Filter versions")).to_have_value(
            "metadata.acc >> 1"
        )
        response = page.goto("/registries/models/c/classifier?where=colour+%3D+red")
        assert response is not None and response.status == 400
        expect(page.locator(".filter-error")).to_contain_text("unknown filter field 'colour'")

        # the artifact's own versions list has the same box
        page.goto("/p/vision/a/clf")
        box = page.get_by_role("searchbox", name="Filter versions")
        box.fill("metadata.acc >= 0.85")
        box.press("Enter")
        assert rows(page) == ["v2", "v1"]
        page.get_by_label("Sort versions").fill("-version")
        page.get_by_role("button", name="Filter").click()
        assert rows(page) == ["v2", "v1"]
        page.locator("table.versions").get_by_role("link", name="v1", exact=True).click()
        expect(page).to_have_url(re.compile(r"/p/vision/a/clf/v/v1$"))
        page.goto("/p/vision/a/clf?where=tags+in+[eval")
        expect(page.locator(".filter-error")).to_be_visible()
        page.get_by_role("link", name="Clear").click()
        assert rows(page) == ["v2", "v1", "v0"]


def test_who_sees_which_registry(world: World) -> None:
    with world.web("stan") as stan:
        listing = stan.get("/registries").text
        assert 'href="/registries/models"' not in listing and "No registries" in listing
        r = stan.get("/registries/models")
        assert r.status_code == 404 and "does not exist or you have no access" in r.text
        assert stan.get("/registries/models/c/classifier").status_code == 404
        assert stan.get("/registries/nothing").status_code == 404
    with world.web("mona") as mona:
        page = mona.get("/registries/models/c/classifier")
        assert page.status_code == 200
        # mona may not read project vision: the target is named, not linked
        assert "vision/clf:v1" in page.text
        assert 'href="/p/vision/a/clf/v/v1"' not in page.text
    with world.web("root") as root:
        assert 'href="/registries/models"' in root.get("/registries").text
        assert root.get("/registries/models/c/nothing").status_code == 404


def test_alias_timeline_and_as_of_on_a_collection(world: World, browser: Any) -> None:
    moves = world.moves["production"]
    with browser_page(browser, world, "vera") as page:
        page.goto("/registries/models/c/classifier")
        spans = page.locator("table.timeline-spans tr[data-alias='production']")
        expect(spans).to_have_count(3)
        assert [s.get_attribute("data-version") for s in spans.all()] == ["v2", "v1", "v0"]
        expect(spans.nth(0)).to_contain_text("now")
        expect(spans.nth(1)).to_contain_text("vision/clf:v1")
        staging = page.locator("table.timeline-spans tr[data-alias='staging']")
        expect(staging).to_have_count(1)
        expect(staging).not_to_contain_text("now")  # removed since

        # as of a moment between the first and the second move: v0 held production
        page.locator("#at").fill(between(moves[0], moves[1]))
        page.get_by_role("button", name="Show").click()
        held = page.locator("table.as-of-result tr[data-alias='production']")
        expect(held).to_contain_text("v0")
        expect(page.locator("table.as-of-result tr[data-alias='latest']")).to_contain_text("v0")
        expect(page.locator("table.as-of-result tr[data-alias='staging']")).to_contain_text(
            "nothing"
        )
        held.get_by_role("link", name="vision/clf:v0").click()
        expect(page).to_have_url(re.compile(r"/p/vision/a/clf/v/v0$"))

        page.goto("/registries/models/c/classifier?at=" + between(moves[1], moves[2]))
        expect(page.locator("table.as-of-result tr[data-alias='production']")).to_contain_text(
            "vision/clf:v1"
        )
        expect(page.locator("table.as-of-result tr[data-alias='staging']")).to_contain_text(
            "vision/clf:v1"
        )
        response = page.goto("/registries/models/c/classifier?at=yesterday")
        assert response is not None and response.status == 400
        expect(page.locator("#timeline .error-message")).to_contain_text("date and time")


def test_alias_timeline_and_as_of_on_an_artifact(world: World, browser: Any) -> None:
    moves = world.moves["best"]
    with browser_page(browser, world, "vera") as page:
        page.goto("/p/vision/a/clf")
        spans = page.locator("table.timeline-spans tr[data-alias='best']")
        assert [s.get_attribute("data-version") for s in spans.all()] == ["v2", "v1", "v0"]
        expect(spans.nth(0)).to_contain_text("now")
        expect(spans.nth(2)).to_contain_text("root")  # who set it
        page.locator("#at").fill(between(moves[0], moves[1]))
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(r"at=20"))
        held = page.locator("table.as-of-result tr[data-alias='best']")
        expect(held).to_contain_text("v0")
        expect(page.locator("table.as-of-result tr[data-alias='latest']")).to_contain_text("v2")
        page.goto("/p/vision/a/clf?at=" + between(moves[1], moves[2]))
        held = page.locator("table.as-of-result tr[data-alias='best']")
        expect(held).to_contain_text("v1")
        held.get_by_role("link", name="clf:v1").click()
        expect(page).to_have_url(re.compile(r"/p/vision/a/clf/v/v1$"))
        # before anything existed: nothing held anything
        page.goto("/p/vision/a/clf?at=2000-01-01T00:00")
        expect(page.locator("table.as-of-result tr[data-alias='best']")).to_contain_text("nothing")


def test_version_page_shows_where_it_is_linked(world: World, browser: Any) -> None:
    with browser_page(browser, world, "vera") as page:
        page.goto("/p/vision/a/clf/v/v2")
        linked = page.locator("#linked-in")
        expect(linked).to_contain_text("models/classifier:v2")
        expect(linked).to_contain_text("production")
        linked.get_by_role("link", name="models/classifier:v2").click()
        expect(page).to_have_url(re.compile(r"/registries/models/c/classifier#link-v2$"))
        expect(page.locator("#link-v2")).to_contain_text("vision/clf:v2")
    with world.web("otto") as otto:  # admin of the project, no role in the registry
        page_text = otto.get("/p/vision/a/clf/v/v2").text
        assert "models/classifier" not in page_text
        assert "Not linked into any registry you can see" in page_text


@pytest.mark.changes_world
def test_link_set_aliases_and_unlink(world: World, browser: Any) -> None:
    """A member links a version, sets and removes a collection alias and unlinks; a protected
    alias is refused to a member with a 403 (nothing changes); a viewer edits nothing."""
    registry = world.server.app.state.services.registry
    world.server.app.state.services.accounts.set_role("vision", "mona", "read")
    with browser_page(browser, world, "mona") as page:
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto("/p/vision/a/clf/v/v0")
        form = page.locator("#link-form")
        form.get_by_label("Registry").select_option("models")
        form.get_by_label("Collection", exact=True).fill("candidates")
        form.get_by_label("Aliases in the collection").fill("review")
        form.get_by_role("button", name="Link").click()
        expect(page.locator(".flash")).to_contain_text("Linked v0 as models/candidates:v0")
        linked = page.locator("#linked-in li", has_text="models/candidates:v0")
        expect(linked).to_contain_text("review")
        assert registry.resolve_link("models", "candidates", "review").target.version == 0

        page.goto("/registries/models/c/classifier")
        expect(page.locator("#protected-note")).to_contain_text("you are a member")
        # production is protected: a member gets no button to remove it ...
        expect(page.get_by_role("button", name="Remove alias production from v2")).to_have_count(0)
        page.get_by_label("New alias for v0").fill("canary")
        page.locator("#link-v0").get_by_role("button", name="Set").click()
        expect(page.locator(".flash")).to_contain_text("'canary' set on models/classifier:v0")
        expect(page.locator("#link-v0")).to_contain_text("canary")
        expect(page.locator("table.timeline-spans tr[data-alias='canary']")).to_contain_text("now")
        page.get_by_role("button", name="Remove alias canary from v0").click()
        expect(page.locator("#link-v0")).not_to_contain_text("canary")
        page.locator("#link-v0").get_by_role("button", name="Unlink v0").click()
        expect(page.locator(".flash")).to_contain_text("Unlinked models/classifier:v0")
        expect(page.locator("#link-v0")).to_have_count(0)
        assert registry.resolve("vision", "clf", "v0").state == "committed"  # untouched
        # the timeline still names what the unlinked v0 linked to while it held production
        held = page.locator("table.timeline-spans tr[data-alias='production'][data-version='v0']")
        expect(held).to_contain_text("vision/clf:v0")

    with world.web("mona") as mona:  # ... and moving it anyway is a 403 that changes nothing
        r = mona.post(
            "/registries/models/c/classifier/v/v1/aliases",
            data={"alias": "production", "action": "add"},
        )
        assert r.status_code == 403 and "protected" in r.text
        r = mona.post(
            "/registries/models/c/classifier/v/v2/aliases",
            data={"alias": "production", "action": "remove"},
        )
        assert r.status_code == 403
        assert mona.post("/registries/models/c/classifier/v/v2/unlink").status_code == 403
        assert registry.resolve_link("models", "classifier", "production").version == 2
    with world.web("vera") as vera:  # a viewer
        page_text = vera.get("/registries/models/c/classifier").text
        assert "Unlink" not in page_text and "New alias for" not in page_text
        assert 'id="link-form"' not in vera.get("/p/vision/a/clf/v/v1").text
        r = vera.post(
            "/registries/models/c/classifier/v/v1/aliases", data={"alias": "x", "action": "add"}
        )
        assert r.status_code == 403
        r = vera.post(
            "/p/vision/a/clf/v/v1/link", data={"registry": "models", "collection": "other"}
        )
        assert r.status_code == 403
    with world.web("root") as root:  # a server administrator moves a protected alias
        r = root.post(
            "/registries/models/c/classifier/v/v1/aliases",
            data={"alias": "production", "action": "add"},
        )
        assert r.status_code == 303
        assert registry.resolve_link("models", "classifier", "production").version == 1


@pytest.mark.changes_world
def test_registry_admin_edits_members_and_protected_aliases(world: World, browser: Any) -> None:
    registry = world.server.app.state.services.registry
    with browser_page(browser, world, "root") as page:
        page.goto("/registries/models")
        members = page.locator("table.members")
        expect(members.locator("tr[data-member='vera']")).to_contain_text("viewer")
        expect(members.locator("tr[data-member='mona']")).to_contain_text("member")
        form = page.locator("#add-member")
        form.get_by_label("Member").fill("otto")
        form.get_by_label("Role").select_option("maintainer")
        form.get_by_role("button", name="Give role").click()
        expect(page.locator(".flash")).to_contain_text("otto is a maintainer of models")
        expect(members.locator("tr[data-member='otto']")).to_contain_text("maintainer")
        page.get_by_role("button", name="Take vera's role away").click()
        expect(members.locator("tr[data-member='vera']")).to_have_count(0)
        page.locator("#registry-settings summary").click()
        page.get_by_label("Protected aliases").fill("production, staging")
        page.get_by_label("Registry description").fill("Models *we ship*.")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".flash")).to_have_text("Registry saved.")
        expect(page.locator("#protected")).to_contain_text("staging")
        expect(page.locator(".description em")).to_have_text("we ship")
    assert registry.get_registry("models").protected_aliases == ["production", "staging"]
    roles = registry.audit_log(action="registry.role", user="root", limit=100)
    assert [(e.target, e.after) for e in roles[-2:]] == [
        ("models:otto", {"role": "maintainer"}),
        ("models:vera", {"role": None}),
    ]
    with world.web("vera") as vera:  # no role any more: the registry is gone for her
        assert vera.get("/registries/models").status_code == 404
    with world.web("mona") as mona:  # a member: sees the members, edits nothing
        page_text = mona.get("/registries/models").text
        assert "otto" in page_text and 'id="add-member"' not in page_text
        assert "registry-settings" not in page_text
        r = mona.post("/registries/models/members", data={"member": "mona", "role": "admin"})
        assert r.status_code == 403
        r = mona.post("/registries/models/settings", data={"protected_aliases": ""})
        assert r.status_code == 403
        r = mona.post(
            "/registries/models/c/classifier/v/v2/aliases",
            data={"alias": "staging", "action": "add"},
        )
        assert r.status_code == 403 and "protected" in r.text  # staging is protected now
    with world.web("otto") as otto:  # a maintainer moves a protected alias
        r = otto.post(
            "/registries/models/c/classifier/v/v0/aliases",
            data={"alias": "production", "action": "add"},
        )
        assert r.status_code == 303
    assert registry.resolve_link("models", "classifier", "production").version == 0
