"""The public pages in every language the locale files name (en, en-IN and hi-IN here), over HTTP:
the language chosen from Accept-Language (q-values honoured), ?lang= and its cookie, the switch on
every page, lang and dir from the locale data (a pseudo right-to-left locale too), the consent text
recorded as shown, and a change on the preferences page that the next email follows."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from nurture.engine.dispatcher import Dispatcher
from nurture.rendering.locales import Locales
from nurture.store.database import make_engine, upgrade
from nurture.store.models import ConsentEvent
from nurture.web.forms import CONSENT_TEXT
from nurture.web.languages import Languages
from nurture.web.options import WebOptions
from tests.support.clock import T0
from tests.support.languages import RTL_TRANSLATIONS, templates_with_hindi, templates_with_rtl
from tests.support.web import Web, build_web, rows, subscriber_row, web_dispatcher

HTML_TAG = re.compile(r'<html lang="([^"]+)" dir="(ltr|rtl)">')
H1 = re.compile(r"<h1>(.*?)</h1>", re.S)
DEVANAGARI = re.compile(r"[\u0900-\u097F]")
HINDI = "hi-IN"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'languages.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def web(engine: Engine, tmp_path: Path) -> Iterator[Web]:
    harness = build_web(str(engine.url), engine, tmp_path,
                        templates_dir=templates_with_hindi(tmp_path))
    yield harness
    harness.close()


def tag_of(web: Web, locale: str) -> str:
    return Locales(web.settings.templates_dir / "locales").languages()[locale].tag


def html_tag(response: httpx.Response) -> tuple[str, str]:
    match = HTML_TAG.search(response.text)
    assert match, response.text[:300]
    return match.group(1), match.group(2)


def heading(response: httpx.Response) -> str:
    match = H1.search(response.text)
    assert match, response.text[:500]
    return match.group(1).strip()


def pages(web: Web, locale: str, headers: dict[str, str]) -> Iterator[tuple[str, httpx.Response]]:
    """Every public page a person can reach, with their browser's headers, in a real order; they
    leave the form's language as the page chose it."""
    browser = web.browser()
    yield "signup", browser.get("/", headers=headers)
    form = {"email": "asha.k@example.org", "time_zone": "Europe/London", "locale": locale,
            "consent": "yes", "safety": "no", "csrf_token": browser.csrf("/")}
    yield "signup-errors", browser.post("/", data={**form, "email": "no at sign"}, headers=headers)
    yield "check-inbox", browser.post("/", data=form, headers=headers)
    yield "crisis-after-signup", browser.post("/", data={**form, "safety": "yes"}, headers=headers)
    confirm = f"/confirm/{web.token('confirm')}"
    yield "confirm", browser.get(confirm, headers=headers)
    yield "confirmed", browser.post(confirm, data={"csrf_token": browser.csrf(confirm)},
                                    headers=headers)
    preferences = f"/p/{web.token('preferences')}"
    yield "preferences", browser.get(preferences, headers=headers)
    yield "preferences-errors", browser.post(
        preferences, data={"csrf_token": browser.csrf(preferences), "action": "pause"},
        headers=headers)
    yield "discreet", browser.get(preferences + "/discreet", headers=headers)
    yield "discreet-on", browser.post(preferences + "/discreet", headers=headers,
                                      data={"csrf_token": browser.csrf(preferences)})
    for path, purpose in (("booked", "booked"), ("yes", "partner_yes"), ("solo", "started_solo")):
        url = f"/{path}/{web.token(purpose)}"
        yield path, browser.get(url, headers=headers)
        yield f"{path}-thanks", browser.post(url, data={"csrf_token": browser.csrf(url)},
                                             headers=headers)
    yield "for-your-partner", browser.get("/for-your-partner", headers=headers)
    yield "help", browser.get("/help", headers=headers)
    unsubscribe = f"/u/{web.token('unsubscribe')}"
    yield "unsubscribe", browser.get(unsubscribe, headers=headers)
    yield "unsubscribed", browser.post(unsubscribe, data={"csrf_token": browser.csrf(unsubscribe)},
                                       headers=headers)
    yield "bad-link", browser.get("/u/not-a-real-token", headers=headers)
    yield "not-found", browser.get("/nowhere", headers=headers)


@pytest.mark.parametrize("locale", ["en", "en-IN", HINDI])
def test_every_public_page_speaks_the_language_the_browser_asks_for(web: Web, locale: str) -> None:
    headers = {"Accept-Language": f"{locale},en;q=0.5"}
    seen = []
    for name, response in pages(web, locale, headers):
        assert response.status_code < 500, name
        assert html_tag(response) == (tag_of(web, locale), "ltr"), name
        assert response.headers["content-language"] == tag_of(web, locale), name
        # The switch names every language in its own words, and links to this page in each.
        for other in ("en", "en-IN", HINDI):
            if other != locale:
                assert re.search(rf'<a href="/[^"]*\?lang={other}" lang="', response.text), (name, other)
        h1 = heading(response)
        assert bool(DEVANAGARI.search(h1)) is (locale == HINDI), (name, h1)
        seen.append(name)
    assert len(seen) == 22


def test_the_rate_limit_page_speaks_hindi(engine: Engine, tmp_path: Path) -> None:
    web = build_web(str(engine.url), engine, tmp_path, options=WebOptions(signup_per_ip_per_hour=1),
                    templates_dir=templates_with_hindi(tmp_path))
    try:
        browser = web.browser()
        headers = {"Accept-Language": "hi"}
        form = {"email": "asha.k@example.org", "locale": HINDI, "consent": "yes", "safety": "no"}
        assert browser.post("/", headers=headers,
                            data={**form, "csrf_token": browser.csrf("/")}).status_code == 200
        limited = browser.post("/", headers=headers, data={**form, "csrf_token": browser.csrf("/")})
        assert limited.status_code == 429
        assert heading(limited) == "कृपया थोड़ा रुकें"
        assert html_tag(limited)[0] == tag_of(web, HINDI)
    finally:
        web.close()


def test_hindi_pages_are_hindi_through_and_through(web: Web) -> None:
    browser = web.browser()
    page = browser.get("/", headers={"Accept-Language": "hi-IN,hi;q=0.9,en;q=0.8"})
    text = re.sub(r"<[^>]+>", " ", page.text.split("<main", 1)[1].split("</main>")[0])
    for english in ("Sign up", "Your email address", "What seems to hold your partner back?",
                    "Worried they will be blamed", "Do you feel unsafe", "I am 18 or older"):
        assert english not in text, english
    for hindi in ("साइन अप करें", "आपका ईमेल पता", "उन्हें डर है कि सारा दोष उन्हीं पर डाला जाएगा",
                  "मेरी उम्र 18 साल या उससे ज़्यादा है"):
        assert hindi in text, hindi
    assert '<option value="hi-IN" data-zones="Asia/Calcutta Asia/Kolkata" selected>' in page.text


@pytest.mark.parametrize(("header", "selected"), [
    ("hi-IN,hi;q=0.9,en;q=0.8", HINDI),
    ("en-GB,en;q=0.9,hi;q=0.8", "en"),      # Hindi is understood, English is preferred
    ("hi;q=0.9, en-IN", "en-IN"),
    ("fr;q=0.9, hi;q=0.5", HINDI),          # French is not offered: the next best
    ("hi;q=0, en", "en"),                   # q=0 means "not this"
])
def test_the_signup_form_preselects_from_accept_language(web: Web, header: str, selected: str) -> None:
    page = web.browser().get("/", headers={"Accept-Language": header})
    chosen = re.findall(r'<option value="([^"]+)"[^>]*\bselected>', page.text)
    assert chosen == [selected]


def test_lang_in_the_address_sets_the_page_and_a_cookie_keeps_it(web: Web) -> None:
    browser = web.browser()
    english = {"Accept-Language": "en"}
    switched = browser.get("/help?lang=hi-IN", headers=english)
    assert html_tag(switched)[0] == tag_of(web, HINDI)
    assert "lang=hi-IN" in switched.headers["set-cookie"]
    assert heading(switched) == "आपकी सुरक्षा सबसे पहले है"
    assert "14416" in switched.text, "the helplines of the Hindi locale file"
    # The cookie carries the choice to the next page, whatever the browser's languages.
    later = browser.get("/", headers=english)
    assert html_tag(later)[0] == tag_of(web, HINDI)
    assert re.search(r'<option value="hi-IN"[^>]*selected>', later.text), "and the form's choice"
    back = browser.get("/?lang=en", headers=english)
    assert html_tag(back)[0] == "en"
    assert html_tag(browser.get("/for-your-partner", headers=english))[0] == "en"
    # A value that is not a locale changes nothing and sets no cookie.
    odd = web.browser().get("/?lang=../../etc", headers=english)
    assert html_tag(odd)[0] == "en"
    assert not [cookie for cookie in odd.headers.get_list("set-cookie")
                if cookie.startswith("lang=")]


def test_the_switch_never_links_off_the_site(web: Web) -> None:
    page = web.browser().get("http://testserver//evil.example/x")
    assert page.status_code == 404
    assert 'href="//evil.example' not in page.text
    assert '<a href="/?lang=hi-IN"' in page.text, "the start page instead"


def test_a_hindi_signup_records_the_hindi_consent_text_it_showed(web: Web) -> None:
    browser = web.browser()
    headers = {"Accept-Language": "hi"}
    shown = browser.get("/", headers=headers)
    consent = re.search(r'<label for="consent">(.*?)</label>', shown.text, re.S)
    assert consent and DEVANAGARI.search(consent.group(1))
    form = {"email": "asha.k@example.org", "locale": HINDI, "consent": "yes", "safety": "no",
            "csrf_token": csrf_of(shown)}
    assert browser.post("/", data=form, headers=headers).status_code == 200
    (event,) = rows(web.engine, ConsentEvent)
    assert event.consent_text_sha256 == hashlib.sha256(
        consent.group(1).encode("utf-8")).hexdigest()
    assert event.consent_text_sha256 != hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()
    assert subscriber_row(web.engine).locale == HINDI


def csrf_of(response: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', response.text)
    assert match
    return match.group(1)


def test_form_errors_and_notices_speak_hindi_with_hindi_dates(web: Web) -> None:
    browser = web.browser()
    headers = {"Accept-Language": "hi"}
    refused = browser.post("/", headers=headers, data={
        "email": "", "locale": HINDI, "safety": "no", "csrf_token": browser.csrf("/")})
    assert refused.status_code == 422
    assert "कृपया अपना ईमेल पता लिखें।" in refused.text
    assert "साइन अप के लिए कृपया पुष्टि करें" in refused.text
    web.signup(locale=HINDI, time_zone="Asia/Kolkata")
    web.confirm()
    paused = web.preferences("pause", pause="date", until="2026-04-01")
    assert paused.status_code == 200
    assert "बुधवार, 1 अप्रैल 2026 तक रोक दिए गए हैं।" in paused.text, "the date as Hindi writes it"


# -- a change on the preferences page, and the next email ---------------------------------------


@pytest.fixture
def dispatcher(web: Web, smtp_server: Any) -> Dispatcher:
    return web_dispatcher(web, smtp_server.url)


def html_lang(message: Any) -> str:
    html = message.get_body(("html",)).get_content()
    match = re.search(r'<html[^>]*\blang="([^"]+)"', html)
    assert match
    return match.group(1)


def test_a_language_chosen_on_the_preferences_page_holds_from_the_next_email(
        web: Web, dispatcher: Dispatcher, smtp_server: Any) -> None:
    assert web.signup(locale="en").status_code == 200
    assert dispatcher.run(T0).sent == 1
    assert web.confirm().status_code == 200
    assert dispatcher.run(T0).sent == 1
    welcome = smtp_server.messages[-1].message
    assert html_lang(welcome) == "en"

    changed = web.preferences("locale", locale=HINDI)
    assert changed.status_code == 200
    assert html_tag(changed)[0] == tag_of(web, HINDI), "the page answers in the new language"
    assert "सेव हो गया: " in changed.text
    assert "lang=hi-IN" in changed.headers["set-cookie"], "and this browser keeps it"
    assert subscriber_row(web.engine).locale == HINDI

    for day in range(1, 15):
        if dispatcher.run(T0 + timedelta(days=day)).sent:
            break
    assert len(smtp_server.messages) == 3, "the next step went out"
    following = smtp_server.messages[-1].message
    assert html_lang(following) in (HINDI, tag_of(web, HINDI))


# -- a right-to-left locale is a file and a catalog, no code ------------------------------------


def test_a_right_to_left_locale_needs_no_code(engine: Engine, tmp_path: Path) -> None:
    web = build_web(str(engine.url), engine, tmp_path, templates_dir=templates_with_rtl(tmp_path))
    try:
        browser = web.browser()
        page = browser.get("/help?lang=xr")
        assert html_tag(page) == ("ar-XR", "rtl")
        assert RTL_TRANSLATIONS["Skip to the main content"] in page.text
        assert heading(page) == "Your safety comes first", "untranslated: English, the fallback"
        assert "Help, mirrored" in page.text, "the crisis help of its own locale file"
        form = {"email": "sam@example.org", "locale": "xr", "consent": "yes", "safety": "no",
                "csrf_token": browser.csrf("/")}
        inbox = browser.post("/", data=form)
        assert heading(inbox) == RTL_TRANSLATIONS["Check your inbox"]
        assert html_tag(inbox) == ("ar-XR", "rtl")
        assert subscriber_row(web.engine, "sam@example.org").locale == "xr"
        assert Languages(web.settings.templates_dir).names()["xr"] == "Mirrorish"
    finally:
        web.close()
