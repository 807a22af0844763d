"""The mail catcher's message page in Chromium: a real email of the product, its HTML part at phone
width (375 px) beside the desktop one, the layout's phone styles applying in the phone frame only,
no horizontal scrolling there, the frames stacking on a narrow window, and a screenshot."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from playwright.sync_api import Browser, Frame, Page

from nurture.content.library import ContentHolder
from nurture.domain.model import Profile
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.mime import build_message
from nurture.rendering.types import Brand, Recipient
from nurture.smtp.mailcatcher import MailCatcher
from nurture.smtp.mailcatcher_pages import PHONE_WIDTH_PX
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.paths import ROOT

pytestmark = pytest.mark.browser

BRAND = Brand(sender="Nurture <hello@nurture.example.org>", discreet_sender_name="Notes for you",
              postal_address="Nurture Relationship Care\n12 Example Lane, Indiranagar\nBengaluru",
              base_url="https://nurture.example.org")
LINKS = LinkMaker(base_url=BRAND.base_url, signer=TokenSigner("mailcatcher-screenshot-secret-0123"))
TO = "ashwini.krishnamurthy-raghavan@example.org"
# What the layout's `@media (max-width: 620px)` block sets: .card padding 24px 16px, .content 16px.
PHONE_STYLES = {"cardPaddingLeft": "16px", "contentFontSize": "16px"}
DESKTOP_STYLES = {"cardPaddingLeft": "28px", "contentFontSize": "17px"}
MEASURE = """() => {
  const root = document.documentElement;
  const card = document.querySelector('.card'), content = document.querySelector('.content');
  return {clientWidth: root.clientWidth, scrollWidth: root.scrollWidth,
          innerWidth: window.innerWidth,
          cardPaddingLeft: getComputedStyle(card).paddingLeft,
          contentFontSize: getComputedStyle(content).fontSize};
}"""


@pytest.fixture(scope="module")
def catcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    with MailCatcher(tmp_path_factory.mktemp("outbox"), smtp_port=0, http_port=0) as catcher:
        yield catcher


def _send_a_welcome(catcher: MailCatcher) -> str:
    """The sample welcome as the product renders it for a person with a long address and name."""
    content = ContentHolder(ROOT / "sequences", ROOT / "templates").current
    sequence = content.sequence("sample")
    step = sequence.steps[0]
    recipient = Recipient(TO, "Ashwini", Profile(time_zone="Asia/Kolkata",
                                                 hesitations=frozenset({"stigma"}), locale="en-IN"))
    links = LINKS.for_subscriber(UUID("7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"))
    rendered = content.library.render(sequence, step, recipient, links, BRAND)
    data = build_message(rendered, to=TO, message_id="<welcome@nurture.example.org>",
                         links=links, date=datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client:
        client.sendmail("hello@nurture.example.org", [TO], data)
    return catcher.messages()[0].name


def _frame(page: Page, kind: str) -> Frame:
    handle = page.locator(f".preview-{kind} iframe").element_handle()
    assert handle is not None, f"no {kind} frame"
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    return frame


def _open(chromium: Browser, url: str, width: int) -> tuple[Page, Any]:
    context = chromium.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.goto(url)
    return page, context


def test_each_message_is_shown_at_phone_width_beside_the_desktop_one(
        chromium: Browser, catcher: MailCatcher, artifacts_dir: Path) -> None:
    name = _send_a_welcome(catcher)
    page, context = _open(chromium, f"{catcher.inbox_url}m/{name}", 1280)
    try:
        assert page.locator("iframe").count() == 2
        assert page.locator(".preview-phone figcaption").inner_text() == "Phone (375 px)"
        assert page.locator(".preview-desktop figcaption").inner_text() == "Desktop"
        for kind in ("phone", "desktop"):
            sandbox = page.locator(f".preview-{kind} iframe").get_attribute("sandbox") or ""
            assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox

        phone = _frame(page, "phone").evaluate(MEASURE)
        assert phone["innerWidth"] == PHONE_WIDTH_PX == phone["clientWidth"], phone
        assert phone["scrollWidth"] <= phone["clientWidth"], f"scrolls sideways: {phone}"
        assert {key: phone[key] for key in PHONE_STYLES} == PHONE_STYLES, phone
        desktop = _frame(page, "desktop").evaluate(MEASURE)
        assert desktop["clientWidth"] > 620, desktop
        assert {key: desktop[key] for key in DESKTOP_STYLES} == DESKTOP_STYLES, desktop

        boxes = [page.locator(f".preview-{kind}").bounding_box() for kind in ("phone", "desktop")]
        assert boxes[0] is not None and boxes[1] is not None
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"], "side by side"
        page.screenshot(path=artifacts_dir / "mailcatcher-phone-beside-desktop.png", full_page=True)
    finally:
        context.close()


def test_on_a_narrow_window_the_frames_stack_phone_first(
        chromium: Browser, catcher: MailCatcher) -> None:
    name = catcher.messages()[0].name if catcher.messages() else _send_a_welcome(catcher)
    page, context = _open(chromium, f"{catcher.inbox_url}m/{name}", 700)
    try:
        phone = page.locator(".preview-phone").bounding_box()
        desktop = page.locator(".preview-desktop").bounding_box()
        assert phone is not None and desktop is not None
        assert desktop["y"] >= phone["y"] + phone["height"], "stacked, phone first"
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    finally:
        context.close()
