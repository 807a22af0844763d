"""The pages around care, over HTTP on SQLite and PostgreSQL: the locale chosen from the browser
(Accept-Language, the time zone) for the signup form and the crisis page, every footer's framing,
the subscriber's own locale on the pages their links open, changing it, discreet mode on the
preferences page and its one-click link, and the page written for a hesitant partner."""

from __future__ import annotations

import html
import re

import httpx

from nurture.domain.reasons import REASONS
from nurture.store.models import Subscriber
from tests.support.web import EMAIL, NAME, Web, count_rows, rows, subscriber_row

# A browser in India set to English: India's numbers and framing, English words.
INDIA = {"Accept-Language": "en-IN,en;q=0.8"}
ENGLAND = {"Accept-Language": "en-GB,en;q=0.9"}
FRAMING_EN = "please call your local emergency number"
FRAMING_IN = "please call 112"


def text(response: httpx.Response) -> str:
    return " ".join(html.unescape(response.text).split())


def selected_locale(response: httpx.Response) -> str:
    match = re.search(r'<option value="([^"]+)"[^>]* selected>', response.text)
    assert match, "no locale is selected"
    return match.group(1)


# -- choosing the locale ------------------------------------------------------------------------


def test_the_signup_form_preselects_the_locale_the_browser_asks_for(web: Web) -> None:
    browser = web.browser()
    assert selected_locale(browser.get("/", headers=INDIA)) == "en-IN"
    hindi = {"Accept-Language": "hi-IN,hi;q=0.9,en;q=0.8"}
    assert selected_locale(browser.get("/", headers=hindi)) == "hi-IN"
    assert selected_locale(browser.get("/", headers={"Accept-Language": "en-IN;q=0, en"})) == "en"
    assert selected_locale(browser.get("/", headers={"Accept-Language": "fr;q=0.9, en-IN;q=0.4"})) \
        == "en-IN", "q-values are honoured"
    assert selected_locale(browser.get("/", headers=ENGLAND)) == "en"
    assert selected_locale(browser.get("/")) == "en"
    page = browser.get("/")
    # The script (/static/timezone.js) chooses en-IN for these zones; without it, the header rules.
    assert re.search(r'<option value="en-IN" data-zones="Asia/Calcutta Asia/Kolkata"', page.text)
    assert 'id="locale" name="locale" data-detect' in page.text


def test_a_person_in_india_who_left_english_chosen_sees_indias_helplines(web: Web) -> None:
    answer = web.signup(safety="yes", locale="en", time_zone="Asia/Kolkata")
    assert answer.status_code == 200
    page = text(answer)
    assert '<html lang="en-IN" dir="ltr">' in answer.text
    for number in ("112", "14490 or 7827170170", "181", "14416 or 1-800-891-4416"):
        assert number in page
    assert FRAMING_IN in page
    assert count_rows(web.engine)["subscriber"] == 0


def test_elsewhere_the_crisis_page_gives_the_emergency_number_and_a_directory(web: Web) -> None:
    page = text(web.signup(safety="yes", locale="en", time_zone="Europe/London"))
    assert "your local emergency number" in page
    assert '<a href="https://findahelpline.com/" rel="noopener">Find A Helpline</a>' in page
    assert "14416" not in page


def test_help_uses_the_link_locale_then_the_browser(web: Web) -> None:
    browser = web.browser()
    assert "14490" in text(browser.get("/help", headers=INDIA))
    assert "14490" not in text(browser.get("/help", headers=ENGLAND))
    assert "14490" in text(browser.get("/help?locale=en-IN", headers=ENGLAND))
    assert "14490" not in text(browser.get("/help?locale=en", headers=INDIA))
    assert "14490" in text(browser.get("/help?locale=../../x", headers=INDIA))


def test_every_page_footer_carries_the_framing_of_its_locale(web: Web) -> None:
    browser = web.browser()
    for path in ("/", "/help", "/for-your-partner", "/no-such-page", "/u/not-a-token"):
        english = text(browser.get(path, headers=ENGLAND))
        india = text(browser.get(path, headers=INDIA))
        assert "They are not therapy" in english and FRAMING_EN in english, path
        assert FRAMING_IN in india and FRAMING_EN not in india, path
        assert 'href="/help?locale=en-IN"' in india, path


# -- the subscriber's own locale -----------------------------------------------------------------


def test_pages_behind_a_link_speak_for_the_subscribers_locale(web: Web) -> None:
    web.signup(locale="en-IN")
    browser = web.browser()
    confirm = browser.get(f"/confirm/{web.token('confirm')}", headers=ENGLAND)
    assert '<html lang="en-IN" dir="ltr">' in confirm.text and FRAMING_IN in text(confirm)
    web.confirm()
    for path in (f"/p/{web.token('preferences')}", f"/u/{web.token('unsubscribe')}",
                 f"/p/{web.token('preferences')}/discreet", f"/booked/{web.token('booked')}"):
        page = browser.get(path, headers=ENGLAND)
        assert page.status_code == 200, path
        assert '<html lang="en-IN" dir="ltr">' in page.text and FRAMING_IN in text(page), path


def test_the_locale_can_be_changed_on_the_preferences_page(web: Web) -> None:
    web.signup()
    web.confirm()
    assert subscriber_row(web.engine).locale == "en"
    changed = web.preferences("locale", locale="en-IN")
    assert changed.status_code == 200
    assert "Saved: English (India)" in text(changed)
    assert '<html lang="en-IN" dir="ltr">' in changed.text
    assert subscriber_row(web.engine).locale == "en-IN"
    refused = web.preferences("locale", locale="fr")
    assert refused.status_code == 422
    assert "Please choose a language from the list." in text(refused)
    assert 'id="locale-error"' in refused.text
    assert subscriber_row(web.engine).locale == "en-IN"


# -- discreet mode -------------------------------------------------------------------------------


def test_in_discreet_mode_the_answers_wait_behind_a_button(web: Web) -> None:
    web.signup(hesitations=["stigma", "fear_of_blame"])
    web.confirm()
    url = f"/p/{web.token('preferences')}"
    shown = web.browser().get(url).text
    assert "<details" not in shown, "not discreet: the answers show at once"
    assert 'value="stigma" checked' in shown

    web.preferences("discreet", discreet="yes")
    hidden = web.browser().get(url).text
    details = hidden[hidden.index('<details class="answers">'):hidden.index("</details>")]
    assert "<summary>Show my answers</summary>" in details
    assert 'value="stigma" checked' in details and "What seems to hold your partner back?" in details
    assert "partner" not in hidden.replace(details, ""), "nothing outside the button names it"
    assert "<title>Your email settings – Notes for you</title>" in hidden, "the neutral name"
    assert '<p class="site-name">Notes for you</p>' in hidden

    refused = web.preferences("answers", hesitations=["no_such_reason"])
    assert refused.status_code == 422
    assert '<details class="answers" open>' in refused.text, "an error opens the answers"


def test_the_discreet_link_shows_one_button_and_only_a_post_turns_it_on(web: Web) -> None:
    web.signup()
    web.confirm()
    browser = web.browser()
    url = f"/p/{web.token('preferences')}/discreet"
    for method in ("GET", "HEAD"):
        assert browser.request(method, url).status_code == 200
    page = browser.get(url)
    assert page.text.count("<form") == 1 and page.text.count("<button") == 1
    assert "Make my emails discreet" in page.text
    assert subscriber_row(web.engine).discreet is False, "a link scanner's GET changes nothing"

    assert browser.post(url, data={}).status_code == 403
    assert subscriber_row(web.engine).discreet is False

    done = browser.post(url, data={"csrf_token": browser.csrf(url)})
    assert done.status_code == 200
    assert "Discreet mode is on" in text(done)
    # The page signs its link at its own second: compare what the token says, not its bytes.
    back = re.findall(r'href="/p/([^"/]+)"', done.text)
    assert [web.signer.verify("preferences", token) for token in back] == [web.subscriber_id()]
    assert subscriber_row(web.engine).discreet is True
    again = browser.get(url)
    assert "They are discreet already" in text(again) and "<button" not in again.text

    assert browser.get("/p/not-a-token/discreet").status_code == 400
    assert browser.get(f"/p/{web.token('unsubscribe')}/discreet").status_code == 400


# -- the page for a hesitant partner --------------------------------------------------------------


def test_the_partner_page_describes_the_first_call_from_the_locale(web: Web) -> None:
    browser = web.browser()
    india = text(browser.get("/for-your-partner", headers=INDIA))
    for fact in ("It takes about 20 minutes.", "You talk with one of our couples therapists.",
                 "It happens by phone or by video, whichever feels easier.",
                 "It can be in English or Hindi.", "It is free, and it commits you to nothing.",
                 "You can ask anything", "You can say no", "You can go slowly"):
        assert fact in india
    assert '<a href="https://example.org/consult">Choose a time for the free call</a>' in india
    english = text(browser.get("/for-your-partner?locale=en", headers=INDIA))
    assert "It can be in English." in english and "Hindi" not in english
    assert browser.request("HEAD", "/for-your-partner").status_code == 200


def test_the_partner_page_knows_no_one(web: Web) -> None:
    browser = web.browser()
    web.signup(browser, hesitations=["stigma", "fear_of_blame"], locale="en-IN")
    web.confirm(browser=browser)
    browser.get(f"/p/{web.token('preferences')}")  # the same browser, cookies and all
    page = browser.get("/for-your-partner")
    assert page.status_code == 200
    words = text(page)
    personal = [EMAIL, NAME, "a•••@", "/p/", "/u/", "token", "stigma", "fear_of_blame",
                REASONS["stigma"], REASONS["fear_of_blame"]]
    for value in personal:
        assert value not in words, value
    assert "set-cookie" not in page.headers, "nothing to remember the reader by"
    assert len(rows(web.engine, Subscriber)) == 1


def test_the_booking_variable_replaces_the_partner_pages_link(web: Web) -> None:
    web.settings.booking_url = "https://book.clinic.test/first-call"
    page = web.browser().get("/for-your-partner")
    assert 'href="https://book.clinic.test/first-call"' in page.text


# -- the JSON API ----------------------------------------------------------------------------------


def test_the_api_gives_a_directory_where_a_locale_lists_no_numbers(web: Web) -> None:
    body = {"email": EMAIL, "consent": True, "unsafe": True, "locale": "en"}
    crisis = web.browser().post("/api/v1/subscribers", json=body).json()["crisis"]
    assert crisis["lines"] == []
    assert crisis["directory"] == {"name": "Find A Helpline", "url": "https://findahelpline.com/"}
    assert FRAMING_EN in crisis["framing"]
    india = web.browser().post("/api/v1/subscribers", json={**body, "time_zone": "Asia/Kolkata"})
    assert [line["contact"] for line in india.json()["crisis"]["lines"]][1] == "14490 or 7827170170"
