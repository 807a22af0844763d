"""The care pages in a real Chromium at phone width (375 px), against the app served by uvicorn on
SQLite: the page for a hesitant partner, the preferences page in discreet mode (answers behind a
button that works without JavaScript), and the locale the signup form chooses with and without its
script. Each page passes the accessibility checks and leaves a screenshot in artifacts/screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from nurture.domain.reasons import REASONS
from nurture.web.forms import CONSENT_TEXT, SAFETY_QUESTION
from tests.browser import a11y
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.web import EMAIL, Web, served_web, subscriber_row

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 800}
CHOSEN = ("fear_of_blame", "vulnerability")


@dataclass
class Site:
    web: Web
    url: str


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with served_web(tmp_path, "care.db") as (web, base_url):
        yield Site(web=web, url=base_url)


def _context(chromium: Browser, *, zone: str, locale: str, script: bool = True) -> BrowserContext:
    context = chromium.new_context(timezone_id=zone, locale=locale, viewport=PHONE,
                                   java_script_enabled=script)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Page]:
    """A phone in India whose browser asks for British English."""
    context = _context(chromium, zone="Asia/Kolkata", locale="en-GB")
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    yield page
    context.close()
    assert errors == [], "console errors (a CSP violation?)"


def fits_and_passes(page: Page, name: str, artifacts_dir: Path) -> None:
    """No sideways scrolling at 375 px, no accessibility problem, and a screenshot to look at."""
    scroll_width, wide = a11y.horizontal_overflow(page, PHONE["width"])
    assert scroll_width <= PHONE["width"] + 1, (name, wide)
    found = a11y.audit(page)
    assert found.problems == [], name
    assert found.texts_checked > 5, "the contrast check saw almost no text"
    path = artifacts_dir / f"{name}-375.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 5_000


def sign_up(site: Site, page: Page, *, discreet: bool) -> None:
    page.goto(site.url + "/")
    page.get_by_label("Your email address").fill(EMAIL)
    for key in CHOSEN:
        page.get_by_label(REASONS[key]).check()
    if discreet:
        page.get_by_label("Keep these emails discreet").check()
    page.get_by_role("group", name=SAFETY_QUESTION).get_by_label("No").check()
    page.get_by_label(CONSENT_TEXT).check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    page.goto(f"{site.url}/confirm/{site.web.token('confirm')}")
    page.get_by_role("button", name="Yes, start my emails").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're all set")


# -- the page for a hesitant partner --------------------------------------------------------------


def test_the_partner_page_at_phone_width(site: Site, phone: Page, artifacts_dir: Path) -> None:
    phone.goto(site.url + "/for-your-partner?locale=en-IN")
    expect(phone.get_by_role("heading", level=1)).to_have_text(
        "If someone close to you has suggested couples therapy")
    facts = phone.get_by_role("region", name="What a first call is like")
    for fact in ("about 20 minutes", "one of our couples therapists", "by phone or by video",
                 "English or Hindi", "free, and it commits you to nothing"):
        expect(facts).to_contain_text(fact)
    expect(phone.get_by_role("region", name="You set the pace")).to_contain_text("You can say no")
    expect(phone.locator("html")).to_have_attribute("lang", "en-IN")
    expect(phone.locator(".framing")).to_contain_text("please call 112")
    fits_and_passes(phone, "partner-page", artifacts_dir)


# -- the preferences page in discreet mode --------------------------------------------------------


def test_discreet_preferences_hide_the_answers_until_asked(site: Site, phone: Page,
                                                           artifacts_dir: Path) -> None:
    sign_up(site, phone, discreet=True)
    phone.goto(f"{site.url}/p/{site.web.token('preferences')}")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Your email settings")
    reason = phone.get_by_label(REASONS[CHOSEN[0]])
    expect(reason).to_be_hidden()
    expect(phone.get_by_text("What seems to hold your partner back?")).to_be_hidden()
    fits_and_passes(phone, "preferences-discreet", artifacts_dir)

    phone.get_by_text("Show my answers").click()
    expect(reason).to_be_visible()
    expect(reason).to_be_checked()
    fits_and_passes(phone, "preferences-discreet-answers-shown", artifacts_dir)


def test_the_answers_button_needs_no_script(site: Site, chromium: Browser) -> None:
    context = _context(chromium, zone="Asia/Kolkata", locale="en-GB")
    page = context.new_page()
    try:
        sign_up(site, page, discreet=True)
    finally:
        context.close()
    context = _context(chromium, zone="Asia/Kolkata", locale="en-GB", script=False)
    page = context.new_page()
    try:
        page.goto(f"{site.url}/p/{site.web.token('preferences')}")
        expect(page.get_by_label(REASONS[CHOSEN[0]])).to_be_hidden()
        page.get_by_text("Show my answers").click()
        expect(page.get_by_label(REASONS[CHOSEN[0]])).to_be_visible()
    finally:
        context.close()


def test_the_discreet_link_from_an_email(site: Site, phone: Page, artifacts_dir: Path) -> None:
    sign_up(site, phone, discreet=False)
    phone.goto(f"{site.url}/p/{site.web.token('preferences')}/discreet")
    fits_and_passes(phone, "discreet-link", artifacts_dir)
    assert subscriber_row(site.web.engine).discreet is False
    phone.get_by_role("button", name="Make my emails discreet").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Discreet mode is on")
    assert subscriber_row(site.web.engine).discreet is True


# -- the locale the signup form chooses ------------------------------------------------------------


@pytest.mark.parametrize(("zone", "language", "script", "expected"), [
    ("Asia/Kolkata", "en-GB", True, "en-IN"),   # the script: the time zone's region
    ("Europe/London", "en-IN", True, "en-IN"),  # no region for the zone: the header decides
    ("Europe/London", "en-GB", True, "en"),
    ("Asia/Kolkata", "en-IN", False, "en-IN"),  # without the script: Accept-Language
    ("Asia/Kolkata", "en-GB", False, "en"),
])
def test_the_signup_form_chooses_the_locale(site: Site, chromium: Browser, zone: str,
                                            language: str, script: bool, expected: str) -> None:
    context = _context(chromium, zone=zone, locale=language, script=script)
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        expect(page.get_by_label("Language and region")).to_have_value(expected)
        if not script:
            expect(page.get_by_label("Your time zone")).to_have_value("UTC")
        page.get_by_label("Your email address").fill(EMAIL)
        page.get_by_role("group", name=SAFETY_QUESTION).get_by_label("Yes").check()
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your safety comes first")
        crisis = page.locator(".crisis")
        if expected == "en-IN":
            expect(crisis).to_contain_text(re.compile(r"14490 or 7827170170"))
        else:
            expect(crisis.get_by_role("link", name="Find A Helpline")).to_be_visible()
    finally:
        context.close()
