"""The public pages in Hindi in a real Chromium, against the app served by uvicorn on SQLite with a
hi-IN locale file: every page at 375 px and 1280 px with screenshots (artifacts/screenshots/hi-*),
no sideways scrolling, the accessibility checks and the right lang attribute; the language switch
without JavaScript; the form's language chosen from Accept-Language and the time zone; and a
pseudo right-to-left locale laid out from the right."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from nurture.rendering.locales import Locales
from nurture.web.options import WebOptions
from tests.browser import a11y
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.languages import RTL_TRANSLATIONS, templates_with_hindi, templates_with_rtl
from tests.support.web import EMAIL, Web, served_web

pytestmark = pytest.mark.browser

WIDTHS: Final = (375, 1280)
HINDI: Final = "hi-IN"
DEVANAGARI: Final = re.compile("[\u0900-\u097F]")
# Where the text of an element lies on the page (not its box, which spans the line).
TEXT_BOX: Final = """(el) => { const range = document.createRange(); range.selectNodeContents(el);
  const box = range.getBoundingClientRect(); return [box.left, box.right]; }"""


@dataclass
class Site:
    web: Web
    url: str

    @property
    def hindi_tag(self) -> str:
        return Locales(self.web.settings.templates_dir / "locales").languages()[HINDI].tag


def _site(tmp_path: Path, templates: Path) -> Iterator[Site]:
    # Two signups an hour from one address: the third shows the rate-limit page.
    with served_web(tmp_path, "hindi.db", options=WebOptions(signup_per_ip_per_hour=2),
                    templates_dir=templates) as (web, base_url):
        yield Site(web=web, url=base_url)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from _site(tmp_path, templates_with_hindi(tmp_path))


def _context(chromium: Browser, *, language: str, zone: str = "Asia/Kolkata",
             script: bool = True) -> BrowserContext:
    context = chromium.new_context(timezone_id=zone, locale=language, java_script_enabled=script,
                                   viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A browser in India that asks for Hindi first."""
    context = _context(chromium, language=HINDI)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def submit(page: Page) -> None:
    page.locator("form[method=post] button[type=submit]").first.click()
    page.wait_for_load_state()


def press(page: Page, action: str) -> None:
    page.locator(f'form:has(input[name="action"][value="{action}"]) button').click()
    page.wait_for_load_state()


def tour(site: Site, page: Page) -> Iterator[str]:
    """Every public page, in Hindi, in a real order; yields each page's name while it is shown."""
    page.goto(site.url + "/")
    expect(page.locator("#locale")).to_have_value(HINDI)
    yield "signup"
    page.locator("#email").fill("asha.k at example.org")
    page.locator("#hesitation-fear_of_blame").check()
    page.locator("#safety-no").check()
    page.locator("#consent").check()
    submit(page)
    yield "signup-errors"
    page.locator("#email").fill(EMAIL)
    submit(page)
    yield "check-inbox"
    page.goto(site.url + "/")
    page.locator("#email").fill(EMAIL)
    page.locator("#safety-no").check()
    page.locator("#consent").check()
    submit(page)
    yield "rate-limited"

    page.goto(f"{site.url}/confirm/{site.web.token('confirm')}")
    yield "confirm"
    submit(page)
    yield "confirmed"
    preferences = f"{site.url}/p/{site.web.token('preferences')}"
    page.goto(preferences)
    yield "preferences"
    press(page, "pause")
    yield "preferences-errors"
    page.goto(preferences + "/discreet")
    yield "discreet"
    submit(page)
    yield "discreet-on"
    for path, purpose in (("booked", "booked"), ("yes", "partner_yes"), ("solo", "started_solo")):
        page.goto(f"{site.url}/{path}/{site.web.token(purpose)}")
        yield path
        submit(page)
        yield f"{path}-thanks"
    page.goto(site.url + "/for-your-partner")
    yield "for-your-partner"
    page.goto(site.url + "/help")
    yield "crisis"
    page.goto(f"{site.url}/u/{site.web.token('unsubscribe')}")
    yield "unsubscribe"
    submit(page)
    yield "unsubscribed"
    page.goto(site.url + "/u/not-a-real-token")
    yield "bad-link"
    page.goto(site.url + "/nowhere")
    yield "not-found"


def test_every_page_in_hindi_fits_passes_and_is_photographed(site: Site, page: Page,
                                                             artifacts_dir: Path) -> None:
    problems: dict[str, object] = {}
    names = []
    for name in tour(site, page):
        names.append(name)
        expect(page.locator("html")).to_have_attribute("lang", site.hindi_tag)
        expect(page.locator("html")).to_have_attribute("dir", "ltr")
        expect(page.get_by_role("heading", level=1)).to_contain_text(DEVANAGARI)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            scroll_width, wide = a11y.horizontal_overflow(page, width)
            if scroll_width > width + 1:
                problems[f"{name}@{width} is wider than the window"] = wide
            path = artifacts_dir / f"hi-{name}-{width}.png"
            page.screenshot(path=path, full_page=True)
            assert path.stat().st_size > 5_000
        page.set_viewport_size({"width": 1280, "height": 900})
        found = a11y.audit(page)
        if found.problems:
            problems[name] = found.problems
    assert len(names) == 22
    assert problems == {}


def test_the_language_switch_works_without_javascript(site: Site, chromium: Browser) -> None:
    context = _context(chromium, language="en-GB", zone="Europe/London", script=False)
    page = context.new_page()
    try:
        page.goto(site.url + "/help")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        switch = page.get_by_role("navigation", name="Language")
        switch.locator(f'a[href$="lang={HINDI}"]').click()
        expect(page.locator("html")).to_have_attribute("lang", site.hindi_tag)
        expect(page.get_by_role("heading", level=1)).to_have_text("आपकी सुरक्षा सबसे पहले है")
        # Kept for the next pages, and the form offers Hindi for the emails too.
        page.goto(site.url + "/")
        expect(page.locator("html")).to_have_attribute("lang", site.hindi_tag)
        expect(page.locator("#locale")).to_have_value(HINDI)
        page.get_by_role("navigation", name="भाषा").locator('a[href$="lang=en"]').click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("button", name="Sign up")).to_be_visible()
    finally:
        context.close()


@pytest.mark.parametrize(("zone", "language", "script", "expected"), [
    ("Asia/Kolkata", "hi-IN", True, HINDI),      # Hindi in India stays Hindi
    ("Asia/Kolkata", "en-GB", True, "en-IN"),     # English in India: India's English
    ("Europe/London", "hi", True, HINDI),         # the header decides where the zone has no locale
    ("Asia/Kolkata", "hi-IN", False, HINDI),      # without the script: Accept-Language alone
])
def test_the_form_s_language_comes_from_accept_language_and_the_time_zone(
        site: Site, chromium: Browser, zone: str, language: str, script: bool,
        expected: str) -> None:
    context = _context(chromium, language=language, zone=zone, script=script)
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        expect(page.locator("#locale")).to_have_value(expected)
    finally:
        context.close()


def test_a_right_to_left_locale_is_laid_out_from_the_right(tmp_path: Path, chromium: Browser,
                                                           artifacts_dir: Path) -> None:
    for site in _site(tmp_path, templates_with_rtl(tmp_path)):
        context = _context(chromium, language="en")
        page = context.new_page()
        try:
            page.set_viewport_size({"width": 375, "height": 800})
            page.goto(site.url + "/help?lang=xr")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            expect(page.locator("html")).to_have_attribute("lang", "ar-XR")
            expect(page.locator(".skip-link")).to_have_text(
                RTL_TRANSLATIONS["Skip to the main content"])
            left, right = page.locator(".site-name").evaluate(TEXT_BOX)
            assert left > 375 / 2 and right > 375 - 40, "the site's name starts at the right"
            scroll_width, wide = a11y.horizontal_overflow(page, 375)
            assert scroll_width <= 376, wide
            page.screenshot(path=artifacts_dir / "rtl-crisis-375.png", full_page=True)
        finally:
            context.close()
