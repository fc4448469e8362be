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
LOAD_MS = 240_000  # first page: server imports, demo data generated, first rollout
STEP_MS = 60_000
FRAME = re.compile(r"frame (\d+) / (\d+)")


@pytest.fixture(scope="module")
def page(browser, viewer_url) -> Page:
    """One page for the module, opened on the viewer's default (demo checkpoint, demo data)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
