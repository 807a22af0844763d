"""The signup, confirmation, unsubscribe and preferences pages in a real Chromium, against the app
served by uvicorn on SQLite: filling in the form with a mouse and with the keyboard only, errors
beside their field, the safety answer, screenshots at phone and desktop widths, and accessibility."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect
from sqlalchemy import func, select

from nurture.domain.people import check_time_zone
from nurture.domain.reasons import REASONS
from nurture.store.models import Subscriber
from nurture.web.forms import CONSENT_TEXT, SAFETY_QUESTION
from tests.browser import a11y
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.web import EMAIL, NAME, Web, served_web, subscriber_row

pytestmark = pytest.mark.browser

ZONE = "Asia/Kolkata"
# Chromium's ICU still answers with the older name of the same zone; both are in tzdata.
ZONE_NAMES = frozenset({"Asia/Kolkata", "Asia/Calcutta"})
WIDTHS = (375, 1280)
CHOSEN = ("stigma", "not_sure")


@dataclass
class Site:
    web: Web
    url: str


@dataclass
class Watched:
    """A page and what its console reported: a CSP violation or script error shows up here."""

    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with served_web(tmp_path, "browser.db") as (web, base_url):
        yield Site(web=web, url=base_url)


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context(timezone_id=ZONE, locale="en-GB",
                                   viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def watched(context: BrowserContext) -> Watched:
    watched = Watched(page=context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        # "Failed to load resource" also reports pages answered 4xx on purpose (a form with errors
        # is a 422) and Chromium's own /favicon.ico request; on_response reports the rest.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            watched.errors.append(message.text)

    def on_response(response: Response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            watched.errors.append(f"{response.status} for {response.url}")

    watched.page.on("console", on_console)
    watched.page.on("response", on_response)
    watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
    return watched


@pytest.fixture
def page(watched: Watched) -> Page:
    return watched.page


def subscriber_count(web: Web) -> int:
    with web.engine.connect() as conn:
        count: int = conn.execute(select(func.count()).select_from(Subscriber)).scalar_one()
    return count


def expect_check_inbox(page: Page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    expect(page).to_have_title(re.compile(r"^Check your inbox"))


def browser_zone(page: Page) -> str:
    # Chromium may report an old name (Asia/Calcutta); it is stored under the current one.
    zone: str = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert zone in ZONE_NAMES, f"the context was not launched in {ZONE}: {zone}"
    return zone


def fill_form(page: Page, email: str) -> None:
    """Everything a person fills in, with the mouse, leaving the time zone as the script set it."""
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Your first name").fill(NAME)
    for key in CHOSEN:
        page.get_by_label(REASONS[key]).check()
    page.get_by_role("group", name=SAFETY_QUESTION).get_by_label("No").check()
    page.get_by_label(CONSENT_TEXT).check()


def submit(page: Page) -> int:
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign up").click()
    page.wait_for_load_state()
    return answer.value.status


# -- 1. the form, filled in with the mouse ------------------------------------------------------


def test_fill_in_the_form_and_see_check_your_inbox(site: Site, watched: Watched) -> None:
    page = watched.page
    page.goto(site.url + "/")
    zone = browser_zone(page)
    # The server writes UTC; /static/timezone.js replaces it with the browser's zone.
    expect(page.get_by_label("Your time zone")).to_have_value(zone)

    fill_form(page, EMAIL)
    assert submit(page) == 200
    expect_check_inbox(page)
    assert watched.errors == [], "console errors (a CSP violation?)"

    row = subscriber_row(site.web.engine)
    # The script chose the locale of the browser's time zone (Asia/Kolkata: en-IN).
    assert (row.status, row.first_name, row.time_zone, row.locale) == (
        "pending", NAME, check_time_zone(zone), "en-IN")
    assert sorted(row.hesitations) == sorted(CHOSEN)
    assert row.discreet is False


# -- 2. a mistake is shown beside its field, and nothing typed is lost --------------------------


def test_malformed_email_shows_the_error_beside_the_field_and_keeps_the_rest(site: Site,
                                                                             page: Page) -> None:
    page.goto(site.url + "/")
    zone = browser_zone(page)
    fill_form(page, "asha.k at example.org")
    page.get_by_label("Language and region").select_option("en-IN")
    page.get_by_label("Keep these emails discreet").check()
    assert submit(page) == 422
    expect(page).to_have_title(re.compile(r"^Please check the form"))

    email = page.get_by_label("Your email address")
    described = (email.get_attribute("aria-describedby") or "").split()
    assert "email-error" in described
    expect(email).to_have_attribute("aria-invalid", "true")
    error = page.locator("#email-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("email")
    # Beside the field: in the field's own block, between its label and the input.
    expect(page.locator("#field-email.field-error #email-error")).to_have_count(1)
    label_box, error_box, input_box = (page.locator(s).bounding_box()
                                       for s in ('label[for="email"]', "#email-error", "#email"))
    assert label_box and error_box and input_box
    assert label_box["y"] < error_box["y"] < input_box["y"]
    assert input_box["y"] - (error_box["y"] + error_box["height"]) < 40
    # The summary at the top announces itself and links to the field.
    summary = page.get_by_role("alert")
    expect(summary).to_be_visible()
    expect(summary.get_by_role("link")).to_have_attribute("href", "#email")
    # Only the address is wrong, so only it is flagged.
    expect(page.locator("[aria-invalid=true]")).to_have_count(1)

    expect(email).to_have_value("asha.k at example.org")
    expect(page.get_by_label("Your first name")).to_have_value(NAME)
    for key in REASONS:
        checkbox = page.locator(f"#hesitation-{key}")
        (expect(checkbox).to_be_checked() if key in CHOSEN else expect(checkbox).not_to_be_checked())
    expect(page.get_by_label("Your time zone")).to_have_value(zone)
    expect(page.get_by_label("Language and region")).to_have_value("en-IN")
    expect(page.get_by_label("Keep these emails discreet")).to_be_checked()
    expect(page.locator("#safety-no")).to_be_checked()
    expect(page.get_by_label(CONSENT_TEXT)).to_be_checked()
    assert subscriber_count(site.web) == 0

    email.fill(EMAIL)
    assert submit(page) == 200
    expect_check_inbox(page)
    row = subscriber_row(site.web.engine)
    assert (row.locale, row.discreet, row.time_zone) == ("en-IN", True, check_time_zone(zone))


# -- 3. the keyboard alone ----------------------------------------------------------------------


def active_id(page: Page) -> str:
    found: str = page.evaluate(
        "() => document.activeElement ? (document.activeElement.id || "
        "document.activeElement.localName + '.' + document.activeElement.className) : ''")
    return found


def test_keyboard_only_signup(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    zone = browser_zone(page)
    keyboard = page.keyboard

    def tab_to(expected: str) -> None:
        keyboard.press("Tab")
        assert active_id(page) == expected, f"Tab should reach {expected}"

    # The first Tab stop is the skip link, and it shows itself when focused.
    tab_to("a.skip-link")
    skip = page.locator("a.skip-link").bounding_box()
    assert skip and skip["x"] >= 0 and skip["y"] >= 0, "the focused skip link is off screen"
    keyboard.press("Enter")
    assert active_id(page) == "main"

    tab_to("email")
    keyboard.type(EMAIL)
    tab_to("first_name")
    keyboard.type(NAME)
    for key in REASONS:
        tab_to(f"hesitation-{key}")
        if key in CHOSEN:
            keyboard.press("Space")
    tab_to("time_zone")  # left as the browser filled it in
    tab_to("locale")
    tab_to("discreet")
    # A radio group is one Tab stop; with nothing chosen it starts on the first option, "No".
    tab_to("safety-no")
    keyboard.press("Space")
    tab_to("consent")
    keyboard.press("Space")
    tab_to("button.button")  # the honeypot (tabindex=-1) is skipped
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        keyboard.press("Enter")
    assert answer.value.status == 200
    expect_check_inbox(page)

    row = subscriber_row(site.web.engine)
    assert (row.first_name, row.time_zone, row.discreet) == (NAME, check_time_zone(zone), False)
    assert sorted(row.hesitations) == sorted(CHOSEN)


# -- 4. the safety question ---------------------------------------------------------------------


def test_safety_yes_shows_the_crisis_page_in_the_chosen_locale(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    page.get_by_label("Your email address").fill(EMAIL)
    page.get_by_label("Language and region").select_option("en-IN")
    page.get_by_role("group", name=SAFETY_QUESTION).get_by_label("Yes").check()
    assert submit(page) == 200

    expect(page.get_by_role("heading", level=1)).to_have_text("Your safety comes first")
    expect(page.locator("html")).to_have_attribute("lang", "en-IN")
    expect(page.locator(".crisis-lines")).to_contain_text("14416")
    expect(page.get_by_role("link", name="Find help now")).to_have_attribute(
        "href", "/help?locale=en-IN")
    assert subscriber_count(site.web) == 0, "nothing about the person may be kept"


# -- a tour of every page, for screenshots and the accessibility checks -------------------------


def tour(site: Site, page: Page) -> Iterator[str]:
    """Visits each page a subscriber can see, in a real order, and yields its name there."""
    page.goto(site.url + "/")
    yield "signup"
    fill_form(page, "asha.k at example.org")
    assert submit(page) == 422
    yield "signup-errors"
    page.get_by_label("Your email address").fill(EMAIL)
    assert submit(page) == 200
    yield "check-inbox"

    page.goto(f"{site.url}/confirm/{site.web.token('confirm')}")
    yield "confirm"
    page.get_by_role("button", name="Yes, start my emails").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're all set")
    yield "confirmed"

    page.goto(f"{site.url}/p/{site.web.token('preferences')}")
    expect(page.get_by_text("Your emails are on.")).to_be_visible()
    yield "preferences"
    page.get_by_role("button", name="Pause emails").click()  # without choosing how long
    expect(page.locator("#pause-error")).to_be_visible()
    yield "preferences-errors"

    page.goto(f"{site.url}/u/{site.web.token('unsubscribe')}")
    yield "unsubscribe"
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're unsubscribed")
    yield "unsubscribed"

    page.goto(site.url + "/help?locale=en-IN")
    yield "crisis"
    page.goto(site.url + "/u/not-a-real-token")
    yield "bad-link"


# -- 5. screenshots -----------------------------------------------------------------------------


def test_screenshots_at_phone_and_desktop_widths(site: Site, page: Page, artifacts_dir: Path) -> None:
    overflowing: dict[str, object] = {}
    saved: list[Path] = []
    for name in tour(site, page):
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            scroll_width, wide = a11y.horizontal_overflow(page, width)
            if scroll_width > width + 1:
                overflowing[f"{name}@{width}"] = (scroll_width, wide)
            path = artifacts_dir / f"{name}-{width}.png"
            page.screenshot(path=path, full_page=True)
            saved.append(path)
        page.set_viewport_size({"width": 1280, "height": 900})
    for required in ("signup", "confirm", "unsubscribe", "preferences"):
        for width in WIDTHS:
            assert artifacts_dir / f"{required}-{width}.png" in saved
    assert all(path.stat().st_size > 5_000 for path in saved)
    assert overflowing == {}, "pages wider than the window (a horizontal scrollbar)"


# -- error marks and the error summary -----------------------------------------------------------


def test_a_fieldset_with_an_error_is_marked_like_any_other_field(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    page.get_by_label("Your email address").fill("asha.k at example.org")
    assert submit(page) == 422  # no answer to the safety question either
    bar = "e => [getComputedStyle(e).borderLeftWidth, getComputedStyle(e).borderLeftColor]"
    email_bar = page.locator("#field-email").evaluate(bar)
    assert email_bar[0] == "5px"
    assert page.locator("#field-safety.field-error").evaluate(bar) == email_bar


def test_an_error_summary_link_takes_focus_to_its_field(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    page.get_by_label("Your email address").fill("asha.k at example.org")
    assert submit(page) == 422
    page.get_by_role("alert").get_by_role("link").first.focus()
    page.keyboard.press("Enter")
    assert active_id(page) == "email"


# -- 6. accessibility ---------------------------------------------------------------------------


def test_every_page_passes_the_accessibility_checks(site: Site, watched: Watched) -> None:
    page = watched.page
    problems: dict[str, list[str]] = {}
    judged = 0
    for name in tour(site, page):
        found = a11y.audit(page)
        if found.problems:
            problems[name] = found.problems
        judged += found.texts_checked
    assert judged > 100, "the contrast check saw almost no text"
    assert problems == {}
    assert watched.errors == []


def test_the_checks_catch_what_they_are_meant_to(page: Page) -> None:
    """The checks themselves, on a page with one of each mistake."""
    page.set_content("""<!doctype html><html><head><title>t</title></head><body>
        <main><h1>One</h1><h1>Two</h1>
        <p style="color:#999;background:#fff">Pale grey on white</p>
        <p style="color:#767676">Just enough grey</p>
        <div style="background:#000"><span style="color:rgba(255,255,255,0.3)">faint</span></div>
        <input id="nameless" type="text"><input type="hidden" name="fine">
        <label for="named">Named</label><input id="named" aria-describedby="missing">
        <select aria-label="Choice"><option>A</option></select>
        <a href="/shown">Shown</a><a href="/hidden" style="display:none">Hidden</a>
        <a href="/far" style="position:absolute;left:2000px">Far</a>
        </main></body></html>""")
    assert a11y.link_problems(page, {"a": "/shown", "b": "/hidden", "c": "/gone", "d": "/far"}, 1280) \
        == ["the b link is hidden", "the c link is missing", "the d link is outside the window"]
    assert a11y.unlabelled_controls(page) == ["input#nameless (name='') has no label"]
    assert a11y.broken_references(page) == ["input#named aria-describedby=missing"]
    assert sorted(a11y.structure_problems(page)) == sorted([
        "<html> has no lang attribute",
        "expected exactly one h1, found 2: ['One', 'Two']",
        "expected one banner landmark (<header>), found 0",
        "expected one contentinfo landmark (<footer>), found 0",
    ])
    findings = {f.text: f for f in a11y.contrast_findings(page)}
    assert set(findings) == {"Pale grey on white", "faint"}
    assert findings["Pale grey on white"].ratio == pytest.approx(2.85, abs=0.01)
