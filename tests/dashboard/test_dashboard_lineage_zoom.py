"""The lineage graph at scale in a real headless Chromium: pan (drag), zoom (wheel, buttons),
fit, find a node by name, the page's own version kept in view on load and after a group
expands, and the plain SVG without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import LiveServer, open_backend
from dashboard_seed import FAN_OUT

from cairn.dashboard import create_dashboard_app

LINEAGE = "/p/demo/a/training-data/v/v1/lineage"


@pytest.fixture(scope="module")
def live(seeded_home: Path) -> Iterator[LiveServer]:
    backend = open_backend(seeded_home)
    with LiveServer(create_dashboard_app(backend)) as server:
        yield server
    backend.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, viewport={"width": 900, "height": 800})
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


def box(locator: Any) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, "not drawn"
    return dict(found)


def inside(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return (
        inner["x"] >= outer["x"] - slack
        and inner["y"] >= outer["y"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def scale(page: Any) -> float:
    return float(page.locator("svg#lineage-graph").get_attribute("data-scale"))


def expanded(page: Any) -> Any:
    """The lineage of training-data:v1 with its group of runs expanded (a tall graph)."""
    page.goto(LINEAGE + "?depth=all")
    graph = page.locator("svg#lineage-graph")
    graph.locator("g[data-kind=group]").click()
    expect(page).to_have_url(re.compile(r"expand=g[0-9a-f]+"))
    expect(graph.locator("g[data-kind=run]")).to_have_count(FAN_OUT + 3)
    return graph


def test_root_in_view_zoom_buttons_and_fit(page: Any) -> None:
    graph = expanded(page)
    expect(page.locator("#graph-tools")).to_be_visible()
    root = graph.locator("g.root")
    expect(root).to_contain_text("training-data:v1")
    assert inside(box(root.locator("rect")), box(graph))  # kept in view after expanding

    before, width = scale(page), box(root.locator("rect"))["width"]
    page.get_by_role("button", name="Zoom in").click()
    assert scale(page) == pytest.approx(before * 1.25, rel=0.01)
    assert box(root.locator("rect"))["width"] == pytest.approx(width * 1.25, rel=0.02)
    assert inside(box(root.locator("rect")), box(graph))  # zoomed about the centre
    page.get_by_role("button", name="Zoom out").click()
    page.get_by_role("button", name="Zoom out").click()
    assert scale(page) == pytest.approx(before * 0.8, rel=0.01)
    expect(page.locator("#zoom-level")).to_have_text(f"{round(scale(page) * 100)}%")

    page.get_by_role("button", name="Fit", exact=True).click()
    frame = box(graph)
    nodes = graph.locator("g[data-node] rect")
    assert nodes.count() >= FAN_OUT + 4
    for i in range(nodes.count()):
        assert inside(box(nodes.nth(i)), frame), f"node {i} outside the fitted view"


def test_wheel_zooms_about_the_pointer_and_drag_pans(page: Any) -> None:
    graph = expanded(page)
    root = graph.locator("g.root rect")
    r = box(root)
    cx, cy = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    page.mouse.move(cx, cy)
    before = scale(page)
    page.mouse.wheel(0, -200)  # zoom in, about the pointer
    page.wait_for_function(f"+document.getElementById('lineage-graph').dataset.scale > {before}")
    after = box(root)
    assert after["width"] > r["width"] * 1.1
    # the point under the pointer stays under it: the root's centre has not moved
    assert after["x"] + after["width"] / 2 == pytest.approx(cx, abs=2)
    assert after["y"] + after["height"] / 2 == pytest.approx(cy, abs=2)

    # drag from the node: the graph follows the pointer and the node's link is not followed
    start = box(root)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 40, cy + 10, steps=4)
    page.mouse.move(cx - 120, cy + 30, steps=4)
    page.mouse.up()
    moved = box(root)
    assert moved["x"] == pytest.approx(start["x"] - 120, abs=2)
    assert moved["y"] == pytest.approx(start["y"] + 30, abs=2)
    expect(page).to_have_url(re.compile(r"/training-data/v/v1/lineage\?"))

    # a plain click still opens the node
    m = box(root)
    page.mouse.click(m["x"] + m["width"] / 2, m["y"] + m["height"] / 2)
    expect(page).to_have_url(re.compile(r"/a/training-data/v/v1/lineage\?depth=all$"))


def test_find_a_node_by_name(page: Any) -> None:
    graph = expanded(page)
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Zoom in").click()
    target = graph.locator("g[data-kind=version]", has_text="classifier").first
    name = target.get_attribute("data-label")
    assert name and name.startswith("classifier:")
    finder = page.get_by_label("Find a node by name")
    finder.fill(name)
    finder.press("Enter")
    expect(target).to_have_class(re.compile(r"\bfound\b"))
    frame, hit = box(graph), box(target.locator("rect"))
    assert hit["x"] + hit["width"] / 2 == pytest.approx(frame["x"] + frame["width"] / 2, abs=2)
    assert hit["y"] + hit["height"] / 2 == pytest.approx(frame["y"] + frame["height"] / 2, abs=2)
    assert graph.locator("g.found").count() == 1

    finder.fill("no-such-node")
    finder.press("Enter")
    expect(page.locator("#find-message")).to_contain_text("No node named")
    expect(graph.locator("g.found")).to_have_count(0)
    page.get_by_role("button", name="training-data:v1").click()
    root, frame = box(graph.locator("g.root rect")), box(graph)
    assert root["x"] + root["width"] / 2 == pytest.approx(frame["x"] + frame["width"] / 2, abs=2)


def test_without_javascript_the_plain_svg(browser: Any, live: LiveServer) -> None:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 900, "height": 800}, java_script_enabled=False
    )
    p = context.new_page()
    p.goto(LINEAGE)
    graph = p.locator("svg#lineage-graph")
    expect(graph).to_be_visible()
    expect(graph).to_have_class(re.compile(r"\bfit\b"))
    expect(p.locator("#graph-tools")).to_be_hidden()
    assert inside(box(graph.locator("g.root rect")), box(p.locator(".graph-scroll")))
    graph.locator("g[data-kind=group]").click()
    expect(p).to_have_url(re.compile(r"expand=g[0-9a-f]+"))
    expect(graph.locator("g[data-kind=group]")).to_have_count(0)
    context.close()


PINCH = """([x, y, spread]) => {
  const svg = document.getElementById("lineage-graph");
  const send = (type, id, px) => svg.dispatchEvent(new PointerEvent(type, {
    pointerId: id, pointerType: "touch", isPrimary: id === 1, clientX: px, clientY: y,
    bubbles: true, cancelable: true, button: 0, buttons: type === "pointerup" ? 0 : 1,
  }));
  send("pointerdown", 1, x - 20);
  send("pointerdown", 2, x + 20);
  for (let step = 1; step <= 5; step++) {
    const half = 20 + (spread / 2 - 20) * step / 5;
    send("pointermove", 1, x - half);
    send("pointermove", 2, x + half);
  }
  send("pointerup", 1, x - spread / 2);
  send("pointerup", 2, x + spread / 2);
}"""


def test_pinch_and_keys_zoom(page: Any) -> None:
    graph = expanded(page)
    root = graph.locator("g.root rect")
    r, before = box(root), scale(page)
    cx, cy = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    page.evaluate(PINCH, [cx, cy, 80])  # two touch points moving apart: 40 px -> 80 px
    assert scale(page) == pytest.approx(before * 2, rel=0.02)
    after = box(root)
    assert after["x"] + after["width"] / 2 == pytest.approx(cx, abs=2)  # about the fingers
    expect(page).to_have_url(re.compile(r"/training-data/v/v1/lineage\?"))  # not a click

    graph.focus()
    page.keyboard.press("-")
    assert scale(page) == pytest.approx(before * 2 * 0.8, rel=0.02)
    page.keyboard.press("0")  # fit
    frame = box(graph)
    assert inside(box(graph.locator("g[data-kind=run] rect").last), frame)
