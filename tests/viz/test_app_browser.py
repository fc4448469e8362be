"""The rollout viewer in a real headless Chromium: served by `panel serve`, driven by Playwright."""

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "artifacts" / "rollout_viewer.png"
SCREENSHOT_BASELINE = ROOT / "artifacts" / "rollout_viewer_coarse_solver.png"
SCREEN = {"width": 1400, "height": 1000}
LOAD_MS = 240_000  # first page: server imports, demo data generated, first rollout
STEP_MS = 60_000
FRAME = re.compile(r"frame (\d+) / (\d+)")


@pytest.fixture(scope="module")
def page(browser, viewer_url) -> Page:
    """One page for the module, opened on the viewer's default (demo checkpoint, demo data)."""
    context = browser.new_context(viewport=SCREEN)
    page = context.new_page()
    page.goto(viewer_url)
    page.locator(".field-images canvas").nth(2).wait_for(timeout=LOAD_MS)
    yield page
    context.close()


def _status(page: Page) -> tuple[str, int, int]:
    """(field, frame, frames) from the status text the app shows, e.g. 'u · frame 3 / 20 · …'."""
    text = page.get_by_text(FRAME).inner_text()
    frame, frames = map(int, FRAME.search(text).groups())
    return text.split(" · ")[0].strip(), frame, frames


def _choose(page: Page, widget: str, label: str) -> None:
    page.locator(f".{widget} select").select_option(label=label)


def _images(page: Page) -> bytes:
    """A screenshot of the field images; Panel replaces their element when it re-renders, so a
    screenshot that lost its element mid-way is taken again on the new one."""
    deadline = time.monotonic() + STEP_MS / 1000
    while True:
        try:
            return page.locator(".field-images").screenshot()
        except PlaywrightError as err:
            if "not attached" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def _wait_images_change(page: Page, before: bytes) -> bytes:
    deadline = time.monotonic() + STEP_MS / 1000
    while (after := _images(page)) == before:
        assert time.monotonic() < deadline, "the field images did not change"
        time.sleep(0.25)
    return after


def test_opens_on_the_demo_with_three_field_images(page):
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.locator(".field-images canvas").count() >= 3  # truth | prediction | error
    expect(page.locator(".data-select select")).to_have_value(re.compile(r"^demo: "))
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(r"frame 1 / \d+"))
    assert _status(page)[2] > 1
    expect(page.locator(".app-message")).to_be_hidden()
    expect(page.get_by_text(re.compile(r"L2RE of sample"))).to_be_visible()


def test_player_steps_through_frames(page):
    _, first, frames = _status(page)
    before = _images(page)
    page.locator(".frame-player button.next").click()
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(rf"frame {first + 1} / {frames}"))
    page.locator(".frame-player button.next").click()
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(rf"frame {first + 2} / {frames}"))
    _wait_images_change(page, before)
    page.locator(".frame-player button.previous").click()
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(rf"frame {first + 1} / {frames}"))
    page.locator(".frame-player button.last").click()
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(rf"frame {frames} / {frames}"))


# Bokeh's views of the plots on the page: their ranges, and each title's right end against the
# plot's width (Bokeh draws titles on the canvas, clipped at its edge)
RANGES_JS = """() => Object.fromEntries([...Bokeh.index.all_views()]
    .filter(v => v.frame && v.model.x_range && v.model.y_range)
    .map(v => [v.model.id, [v.model.x_range.start, v.model.x_range.end,
                            v.model.y_range.start, v.model.y_range.end]]))"""
# the template scrolls its main area (#main), not the window
SCROLL_JS = "() => document.getElementById('main').scrollTop"
TOP_JS = "() => document.getElementById('main').scrollTo(0, 0)"
TITLES_JS = """() => [...Bokeh.index.all_views()]
    .filter(v => v.model.type === "Title" && v.model.text && v.layout && v.parent?.frame
                 && v.parent.bbox)
    .map(v => [v.model.text, v.layout.bbox.x + v._get_size().width, v.parent.bbox.width])"""


def _box(page: Page, selector: str) -> dict[str, float]:
    """The bounding box of the first element of ``selector``, taken again while Panel replaces
    the element (a re-render has no box for a moment)."""
    deadline = time.monotonic() + STEP_MS / 1000
    while (box := page.locator(selector).first.bounding_box()) is None:
        assert time.monotonic() < deadline, f"{selector} has no bounding box"
        time.sleep(0.25)
    return box


def _settled_ranges(page: Page) -> dict[str, list[float]]:
    """The plots' ranges once two reads a second apart agree (no view is still being redrawn)."""
    deadline = time.monotonic() + STEP_MS / 1000
    before = page.evaluate(RANGES_JS)
    while True:
        time.sleep(1)
        now = page.evaluate(RANGES_JS)
        if now == before:
            return now
        assert time.monotonic() < deadline, "the plots kept changing"
        before = now


def _wheel_over(page: Page, selector: str, dy: int) -> None:
    """Turn the mouse wheel over the middle of the visible part of the first canvas of
    ``selector``."""
    box = _box(page, f"{selector} canvas")
    bottom = min(box["y"] + box["height"], page.viewport_size["height"])
    assert bottom - box["y"] > 20, f"{selector} is not on the screen: {box}"
    page.mouse.move(box["x"] + box["width"] / 2, (box["y"] + bottom) / 2)
    page.mouse.wheel(0, dy)


def test_coarse_solver_curves_fit_the_screen_and_titles_are_whole(page):
    _choose(page, "baseline-select", "16²")
    expect(page.get_by_text(re.compile(r"coarse solver 16²: mean"))).to_be_visible(timeout=STEP_MS)
    expect(page.get_by_text(re.compile(r"time per trajectory: model .* s · coarse solver 16² "))
           ).to_be_visible()  # fmt: skip
    expect(page.get_by_text(re.compile(r"L2RE of sample \d+ over frames \d+–\d+ of \d+"))
           ).to_be_visible()  # fmt: skip
    page.locator(".field-images canvas").nth(4).wait_for(timeout=STEP_MS)  # 3 images + 2 errors
    expect(page.locator(".pn-loading")).to_have_count(0, timeout=STEP_MS)
    page.evaluate(TOP_JS)
    page.screenshot(path=str(SCREENSHOT_BASELINE))
    for view in ("field-images", "error-curves", "spectra"):
        box = _box(page, f".{view}")
        assert box["y"] >= 0 and box["y"] + box["height"] <= SCREEN["height"], (view, box)
        assert box["x"] + box["width"] <= SCREEN["width"], (view, box)
    titles = page.evaluate(TITLES_JS)
    assert any("coarse solver 16²" in text for text, _, _ in titles)
    cut = [text for text, end, width in titles if end > width]
    assert not cut, f"titles cut at the plot's edge: {cut}"


def test_the_mouse_wheel_scrolls_the_page_not_the_plots(page):
    page.set_viewport_size({"width": SCREEN["width"], "height": 600})  # a page taller than this
    try:
        page.evaluate(TOP_JS)
        ranges = _settled_ranges(page)
        assert len(ranges) >= 7  # 5 images, curves, spectrum
        _wheel_over(page, ".field-images", 150)
        page.wait_for_function(f"() => ({SCROLL_JS})() > 0", timeout=5_000)
        after_images = page.evaluate(SCROLL_JS)
        _wheel_over(page, ".error-curves", 100)
        page.wait_for_function(f"() => ({SCROLL_JS})() > {after_images}", timeout=5_000)
        time.sleep(0.5)  # a zoom, had there been one, would have landed by now
        assert page.evaluate(RANGES_JS) == ranges
    finally:
        page.set_viewport_size(SCREEN)
        page.evaluate(TOP_JS)


def test_switching_the_field_changes_the_plots(page):
    _choose(page, "data-select", "waves_uv.h5")
    expect(page.locator(".data-info")).to_contain_text("waves_uv.h5", timeout=STEP_MS)
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(r"^u · frame 1 / 6"), timeout=STEP_MS)
    page.locator(".field-images canvas").nth(2).wait_for(timeout=STEP_MS)
    before = _images(page)
    _choose(page, "field-select", "v")
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(r"^v · frame 1 / 6"), timeout=STEP_MS)
    _wait_images_change(page, before)


def test_bad_inputs_give_messages_and_the_app_keeps_working(page):
    message = page.locator(".app-message")
    _choose(page, "data-select", "notes.h5")
    expect(message).to_be_visible(timeout=STEP_MS)
    expect(message).to_contain_text("notes.h5")
    expect(page.locator(".field-images canvas")).to_have_count(0)  # nothing stale left on screen

    _choose(page, "data-select", "five_fields.h5")
    expect(message).to_contain_text(
        re.compile(r"has 5 fields \(a, b, c, d, e\) but the model takes at most [1-4] channels"),
        timeout=STEP_MS,
    )

    page.locator(".path-input input").fill("../outside.h5")
    page.locator(".path-input input").press("Enter")
    expect(message).to_contain_text("refused: ../outside.h5 is outside the data folder",
                                    timeout=STEP_MS)  # fmt: skip

    _choose(page, "data-select", "waves_uv.h5")  # still works
    expect(message).to_be_hidden(timeout=STEP_MS)
    page.locator(".field-images canvas").nth(2).wait_for(timeout=STEP_MS)
    expect(page.get_by_text(FRAME)).to_have_text(re.compile(r"frame 1 / 6"))
