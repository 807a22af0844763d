"""Bad, hostile and forged requests to the web app, on SQLite and PostgreSQL: each gets a clear answer
and leaves no row behind; also rate limits, security headers and forwarded addresses."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import Engine

from nurture.engine.tokens import TokenSigner
from nurture.store.models import ConsentEvent, Subscriber
from nurture.web.options import WebOptions
from nurture.web.security import CONTENT_SECURITY_POLICY
from tests.support.web import EMAIL, GOOD_FORM, NAME, Web, build_web, count_rows, rows

KB10 = "x" * 10_000
EIGHT_DAYS = 8 * 24 * 3600


def old_token(signer: TokenSigner, purpose: str, web: Web, age_seconds: int) -> str:
    """A genuine token signed `age_seconds` ago (itsdangerous stamps tokens with the wall clock)."""
    subscriber_id = web.subscriber_id()
    signed_at = time.time() - age_seconds
    with mock.patch.object(time, "time", return_value=signed_at):
        return signer.sign(purpose, subscriber_id)


def tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]


# -- what each case sends -----------------------------------------------------------------------

Send = Callable[[Web], httpx.Response]


def form(**changes: Any) -> Send:
    return lambda web: web.signup(**changes)


def confirm_post(token: Callable[[Web], str], *, with_csrf: bool = True) -> Send:
    def send(web: Web) -> httpx.Response:
        browser = web.browser()
        data = {"csrf_token": browser.csrf("/")} if with_csrf else {}
        return browser.post(f"/confirm/{token(web)}", data=data)
    return send


def get(url: Callable[[Web], str]) -> Send:
    return lambda web: web.browser().get(url(web))


def one_click(token: Callable[[Web], str]) -> Send:
    return lambda web: web.browser().post(f"/u/{token(web)}",
                                          data={"List-Unsubscribe": "One-Click"})


def api(body: dict[str, Any] | None = None, **kwargs: Any) -> Send:
    good = {"email": EMAIL, "first_name": NAME, "consent": True, "unsafe": False}
    if body is not None:
        good = {k: v for k, v in {**good, **body}.items() if v is not None}
    return lambda web: web.browser().post("/api/v1/subscribers",
                                          **(kwargs or {"json": good}))


def csrf_missing(web: Web) -> httpx.Response:
    browser = web.browser()
    browser.get("/")
    return browser.post("/", data=GOOD_FORM)


def csrf_wrong(web: Web) -> httpx.Response:
    browser = web.browser()
    browser.get("/")
    return browser.post("/", data={**GOOD_FORM, "csrf_token": "0" * 64})


def csrf_from_another_browser(web: Web) -> httpx.Response:
    field = web.browser().csrf("/")
    stranger = web.browser()
    stranger.get("/")
    return stranger.post("/", data={**GOOD_FORM, "csrf_token": field})


def csrf_without_cookie(web: Web) -> httpx.Response:
    browser = web.browser()
    field = browser.csrf("/")
    browser.cookies.clear()
    return browser.post("/", data={**GOOD_FORM, "csrf_token": field})


def preferences_without_csrf(action: str) -> Send:
    def send(web: Web) -> httpx.Response:
        return web.browser().post(f"/p/{web.token('preferences')}",
                                  data={"action": action, "confirm_erase": "yes", "pause": "2w"})
    return send


def unsubscribe_form_without_csrf(web: Web) -> httpx.Response:
    return web.browser().post(f"/u/{web.token('unsubscribe')}", data={"submit": "Unsubscribe"})


# -- state some cases start from ----------------------------------------------------------------


def pending(web: Web) -> None:
    assert web.signup().status_code == 200


def left(web: Web) -> None:
    pending(web)
    web.confirm()
    web.browser().post(f"/u/{web.token('unsubscribe')}", data={"List-Unsubscribe": "One-Click"})


@dataclass(frozen=True)
class Case:
    id: str
    send: Send
    status: int
    message: str
    setup: Callable[[Web], None] | None = None


FORM_ERROR = 422
CHECK_EMAIL = "Please check your email address"
ONE_LINE = "Please use one line, without line breaks or special characters."
BAD_LINK = "This link doesn't work"
TRY_AGAIN = "Please try again"

CASES = [
    # The signup form: every field.
    Case("email-missing", form(email=None), FORM_ERROR, "Please enter your email address."),
    Case("email-blank", form(email="   "), FORM_ERROR, "Please enter your email address."),
    Case("email-no-at", form(email="asha.example.org"), FORM_ERROR, CHECK_EMAIL),
    Case("email-no-domain-dot", form(email="asha@localhost"), FORM_ERROR, CHECK_EMAIL),
    Case("email-two-ats", form(email="asha@@example.org"), FORM_ERROR, CHECK_EMAIL),
    Case("email-two-addresses", form(email="a@example.org, b@example.org"), FORM_ERROR,
         CHECK_EMAIL),
    Case("email-ip-literal", form(email="asha@[127.0.0.1]"), FORM_ERROR, CHECK_EMAIL),
    Case("email-quoted-local", form(email='"a b"@example.org'), FORM_ERROR, CHECK_EMAIL),
    Case("email-script", form(email='"><script>alert(1)</script>@example.org'), FORM_ERROR,
         CHECK_EMAIL),
    Case("email-bidi-override", form(email="asha\u202e@example.org"), FORM_ERROR, CHECK_EMAIL),
    Case("email-header-injection", form(email="asha@example.org\r\nBcc: x@evil.example"),
         FORM_ERROR, ONE_LINE),
    Case("email-trailing-newline", form(email="asha@example.org\n"), FORM_ERROR, ONE_LINE),
    Case("email-nul", form(email="asha\x00@example.org"), FORM_ERROR, ONE_LINE),
    Case("email-10kb", form(email=KB10 + "@example.org"), FORM_ERROR, "too long"),
    Case("email-255-chars", form(email="a" * 243 + "@example.org"), FORM_ERROR, "too long"),
    Case("name-header-injection", form(first_name="Bob\r\nBcc: x@evil"), FORM_ERROR, ONE_LINE),
    Case("name-bell", form(first_name="Bob\x07"), FORM_ERROR, ONE_LINE),
    Case("name-line-separator", form(first_name="Bob\u2028Bcc: x@evil"), FORM_ERROR, ONE_LINE),
    Case("name-10kb", form(first_name=KB10), FORM_ERROR, "80 characters or fewer"),
    Case("name-81-chars", form(first_name="n" * 81), FORM_ERROR, "80 characters or fewer"),
    Case("reason-unknown", form(hesitations=["stigma", "made_up"]), FORM_ERROR,
         "Please choose from the options shown."),
    Case("reason-script", form(hesitations=["<script>"]), FORM_ERROR,
         "Please choose from the options shown."),
    Case("reason-10kb", form(hesitations=[KB10]), FORM_ERROR,
         "Please choose from the options shown."),
    Case("reason-too-many", form(hesitations=["stigma"] * 40), FORM_ERROR,
         "Please choose from the options shown."),
    Case("time-zone-unknown", form(time_zone="Mars/Olympus_Mons"), FORM_ERROR,
         "Please enter a time zone"),
    Case("time-zone-path", form(time_zone="../../etc/passwd"), FORM_ERROR,
         "Please enter a time zone"),
    Case("time-zone-10kb", form(time_zone=KB10), FORM_ERROR, "Please enter a time zone"),
    Case("locale-unknown", form(locale="fr"), FORM_ERROR, "Please choose a language"),
    Case("consent-missing", form(consent=None), FORM_ERROR, "confirm that you are 18 or older"),
    Case("consent-no", form(consent="no"), FORM_ERROR, "confirm that you are 18 or older"),
    Case("safety-missing", form(safety=None), FORM_ERROR, "Please answer this question."),
    Case("safety-other", form(safety="maybe"), FORM_ERROR, "Please answer this question."),
    Case("everything-wrong", form(email="x", consent=None, safety=None, locale="xx"), FORM_ERROR,
         "Please check the form"),
    Case("body-too-large", form(first_name="y" * 70_000), 413, "too large"),
    # Not errors, but nothing may be stored either.
    Case("honeypot", form(website="http://spam.example"), 200, "Check your inbox"),
    Case("unsafe", form(safety="yes"), 200, "Your safety comes first"),
    # Forged requests.
    Case("csrf-missing", csrf_missing, 403, TRY_AGAIN),
    Case("csrf-wrong", csrf_wrong, 403, TRY_AGAIN),
    Case("csrf-other-browser", csrf_from_another_browser, 403, TRY_AGAIN),
    Case("csrf-no-cookie", csrf_without_cookie, 403, TRY_AGAIN),
    # Tokens: forged, tampered, expired, for another purpose, reused.
    Case("token-garbage", get(lambda web: "/confirm/abc.def.ghi"), 400, BAD_LINK),
    Case("token-huge", get(lambda web: "/p/" + "a" * 1000), 400, BAD_LINK),
    Case("token-other-secret",
         confirm_post(lambda web: TokenSigner("another-secret-key-abcdef").sign(
             "confirm", web.subscriber_id())), 400, BAD_LINK, pending),
    Case("token-tampered-confirm", confirm_post(lambda web: tampered(web.token("confirm"))), 400,
         BAD_LINK, pending),
    Case("token-tampered-preferences", get(lambda web: f"/p/{tampered(web.token('preferences'))}"),
         400, BAD_LINK, pending),
    Case("token-expired-get",
         get(lambda web: f"/confirm/{old_token(web.signer, 'confirm', web, EIGHT_DAYS)}"), 410,
         "This link has expired", pending),
    Case("token-expired-post",
         confirm_post(lambda web: old_token(web.signer, "confirm", web, EIGHT_DAYS)), 410,
         "This link has expired", pending),
    Case("token-unsubscribe-used-to-confirm", confirm_post(lambda web: web.token("unsubscribe")),
         400, BAD_LINK, pending),
    Case("token-confirm-used-to-unsubscribe", one_click(lambda web: web.token("confirm")), 400,
         BAD_LINK, pending),
    Case("token-preferences-used-to-unsubscribe", one_click(lambda web: web.token("preferences")),
         400, BAD_LINK, pending),
    Case("token-confirm-used-for-preferences", get(lambda web: f"/p/{web.token('confirm')}"), 400,
         BAD_LINK, pending),
    Case("token-reused-after-unsubscribe", confirm_post(lambda web: web.token("confirm")), 409,
         "can't be used any more", left),
    Case("token-for-nobody",
         confirm_post(lambda web: web.signer.sign("confirm", uuid4())), 404,
         "There's nothing here any more"),
    Case("confirm-without-csrf", confirm_post(lambda web: web.token("confirm"), with_csrf=False),
         403, TRY_AGAIN, pending),
    Case("unsubscribe-form-without-csrf", unsubscribe_form_without_csrf, 403, TRY_AGAIN, pending),
    Case("pause-without-csrf", preferences_without_csrf("pause"), 403, TRY_AGAIN, pending),
    Case("erase-without-csrf", preferences_without_csrf("erase"), 403, TRY_AGAIN, pending),
    # The JSON API.
    Case("api-consent-missing", api({"consent": None}), 422, "Field required"),
    Case("api-consent-false", api({"consent": False}), 422, "18 or older"),
    Case("api-unsafe-missing", api({"unsafe": None}), 422, "Field required"),
    Case("api-email-bad", api({"email": "nobody"}), 422, CHECK_EMAIL),
    Case("api-name-injection", api({"first_name": "Bob\r\nBcc: x@evil"}), 422, ONE_LINE),
    Case("api-reason-unknown", api({"hesitations": ["made_up"]}), 422, "Please choose from"),
    Case("api-locale-unknown", api({"locale": "fr"}), 422, "en-IN"),
    Case("api-extra-field", api({"is_admin": True}), 422, "Extra inputs are not permitted"),
    Case("api-form-encoded", api(data={"email": EMAIL, "consent": "true", "unsafe": "false"}), 422,
         "detail"),
    Case("api-honeypot", api({"website": "http://spam.example"}), 202, "accepted"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_clear_answer_and_stores_nothing(web: Web, case: Case) -> None:
    if case.setup is not None:
        case.setup(web)
    before = count_rows(web.engine)
    statuses = {row.email: row.status for row in rows_of_subscribers(web)}

    response = case.send(web)

    assert response.status_code == case.status, response.text[:500]
    assert case.message in html.unescape(response.text)
    assert count_rows(web.engine) == before
    assert {row.email: row.status for row in rows_of_subscribers(web)} == statuses
    assert "<script>alert" not in response.text, "input must be escaped when shown again"
    if response.headers.get("content-type", "").startswith("text/html"):
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def rows_of_subscribers(web: Web) -> list[Any]:
    return rows(web.engine, Subscriber)


def test_a_form_with_errors_keeps_what_the_person_typed(web: Web) -> None:
    response = web.signup(email="asha@", first_name="Asha & co", hesitations=["fear_of_blame"],
                          time_zone="Asia/Kolkata", locale="en-IN", discreet="yes")
    assert response.status_code == 422
    assert 'value="asha@"' in response.text
    assert 'value="Asha &amp; co"' in response.text
    assert 'value="fear_of_blame" checked' in response.text
    assert 'value="Asia/Kolkata"' in response.text
    assert re.search(r'<option value="en-IN"[^>]* selected>', response.text)
    assert 'id="discreet" name="discreet" type="checkbox" value="yes" checked' in response.text
    assert 'aria-describedby="email-error" aria-invalid="true"' in response.text
    assert "data-detect" not in response.text, "the browser must not overwrite a typed zone"


# -- rate limits --------------------------------------------------------------------------------


def test_signups_from_one_ip_are_limited(database_url: str, engine: Engine,
                                         tmp_path: Path) -> None:
    web = build_web(database_url, engine, tmp_path, WebOptions(signup_per_ip_per_hour=3))
    try:
        for index in range(3):
            assert web.signup(email=f"person{index}@example.org").status_code == 200
        before = count_rows(web.engine)
        limited = web.signup(email="person3@example.org")
        assert limited.status_code == 429
        assert "Please wait a little" in limited.text
        assert int(limited.headers["retry-after"]) > 0
        assert count_rows(web.engine) == before
        other_ip = web.browser(ip="192.0.2.55")
        assert web.signup(other_ip, email="person3@example.org").status_code == 200
        api = web.browser().post("/api/v1/subscribers", json={
            "email": "person4@example.org", "consent": True, "unsafe": False})
        assert api.status_code == 429, "the API shares the limit"
        web.clock.advance(minutes=61)
        assert web.signup(email="person4@example.org").status_code == 200
    finally:
        web.close()


def test_signups_of_one_address_are_limited_across_ips(database_url: str, engine: Engine,
                                                       tmp_path: Path) -> None:
    web = build_web(database_url, engine, tmp_path, WebOptions(
        signup_per_address_per_hour=2, trusted_proxies=frozenset({"10.0.0.1/32"})))
    try:
        for index in range(2):
            browser = web.browser(ip="10.0.0.1")
            field = browser.csrf("/")
            response = browser.post("/", data={**GOOD_FORM, "csrf_token": field},
                                    headers={"X-Forwarded-For": f"198.51.100.{index}"})
            assert response.status_code == 200
        browser = web.browser(ip="10.0.0.1")
        field = browser.csrf("/")
        limited = browser.post("/", data={**GOOD_FORM, "email": EMAIL.upper(), "csrf_token": field},
                               headers={"X-Forwarded-For": "198.51.100.9"})
        assert limited.status_code == 429
        assert web.signup(email="someone.else@example.org").status_code == 200
    finally:
        web.close()


# -- forwarded addresses ------------------------------------------------------------------------


def signup_from(web: Web, peer: str, forwarded: str) -> str | None:
    browser = web.browser(ip=peer)
    field = browser.csrf("/")
    email = f"{uuid4().hex[:10]}@example.org"
    response = browser.post("/", data={**GOOD_FORM, "email": email, "csrf_token": field},
                            headers={"X-Forwarded-For": forwarded})
    assert response.status_code == 200
    events = [e for e in rows(web.engine, ConsentEvent)
              if e.subscriber_id == web.subscriber_id(email)]
    return events[0].ip  # type: ignore[no-any-return]


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    web = build_web(database_url, engine, tmp_path,
                    WebOptions(trusted_proxies=frozenset({"10.0.0.0/8"})))
    try:
        assert signup_from(web, "203.0.113.5", "198.51.100.1") == "203.0.113.5"
        assert signup_from(web, "10.0.0.1", "198.51.100.1") == "198.51.100.1"
        # A client may send its own header; the proxy appends the real peer: the nearest
        # untrusted hop counts, not the left-most.
        assert signup_from(web, "10.0.0.1", "1.2.3.4, 198.51.100.2, 10.0.0.7") == "198.51.100.2"
        assert signup_from(web, "10.0.0.1", "not-an-ip") == "10.0.0.1"
    finally:
        web.close()


def test_x_forwarded_for_is_ignored_without_trusted_proxies(web: Web) -> None:
    assert signup_from(web, "127.0.0.1", "198.51.100.1") == "127.0.0.1"
