"""The signup page: the form (its locale chosen in advance from the browser), its checks, and the
double opt-in that follows; the JSON API takes signups the same way (take_signup)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.engine.ports import ConsentRecord
from nurture.store.accounts.types import PendingSignup
from nurture.web.context import WebContext
from nurture.web.crisis import crisis_page
from nurture.web.dependencies import Caller, CsrfPassed, PostedForm, SignupLimit, Web
from nurture.web.forms import (
    CONSENT_TEXT,
    HONEYPOT_FIELD,
    SAFETY_QUESTION,
    SignupCheck,
    SignupValues,
    check_signup,
    consent_sha256,
    reason_labels,
    signup_values,
)
from nurture.web.locale import _, crisis_locale, locale_keys, request_locale, zones_of
from nurture.web.replies import forbidden, form_page, message_page, rate_limited

router = APIRouter(include_in_schema=False)


def signup_context(web: WebContext, values: SignupValues, errors: Mapping[str, str], *,
                   fresh: bool) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "reasons": reason_labels(),
        "locales": web.languages.names(),
        # For /static/timezone.js: the locales of a browser's time zone's region (Asia/Kolkata:
        # en-IN, hi-IN); the script keeps the one chosen here when it is one of them.
        "zones_of": zones_of(locale_keys()),
        "consent_text": _(CONSENT_TEXT),
        "safety_question": _(SAFETY_QUESTION),
        "honeypot_field": HONEYPOT_FIELD,
        "detect_time_zone": fresh,
    }


async def take_signup(web: WebContext, check: SignupCheck, record: ConsentRecord,
                      now: datetime) -> None:
    """Store the pending signup; a confirmation email goes out only when one is due."""
    person = check.person
    assert person is not None
    await run_in_threadpool(
        web.accounts.signup_pending,
        PendingSignup(email=person.email, first_name=person.first_name,
                      time_zone=person.time_zone, hesitations=person.hesitations,
                      discreet=person.discreet, locale=person.locale, consent=record),
        now=now, resend_interval=web.resend_interval,
    )


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def signup_form(request: Request, web: Web) -> Response:
    # Chosen in advance from ?lang=, its cookie or Accept-Language; the page's script prefers a
    # locale of the time zone's region.
    values = SignupValues(locale=request_locale())
    return form_page(web, request, "signup.html", **signup_context(web, values, {}, fresh=True))


@router.post("/", response_class=HTMLResponse)
async def signup(request: Request, web: Web, form: PostedForm, csrf_ok: CsrfPassed,
                 caller: Caller, limit: SignupLimit) -> Response:
    if form is None:
        return message_page(web, 400, _("Something went wrong with the form"),
                            _("Please go back, reload the page and try again."))
    values = signup_values(form)
    if values.safety == "yes":
        # Safety first: before any other check, and nothing about the person is kept.
        return crisis_page(web, crisis_locale(values.locale, values.time_zone), after_signup=True)
    if not csrf_ok:
        return forbidden(web)
    if values.honeypot:
        return web.pages.render("check-inbox.html")
    now = web.clock()
    check = check_signup(values)
    retry = limit(check.person.email if check.person else None, now)
    if retry is not None:
        return rate_limited(web, retry)
    if check.errors:
        return form_page(web, request, "signup.html", status=422,
                         **signup_context(web, values, check.errors, fresh=False))
    # The consent text as this page showed it, in its language.
    await take_signup(web, check, caller.consent("signup", web.web_source,
                                                 text_sha256=consent_sha256(_(CONSENT_TEXT))), now)
    # The same page whatever the address's state: the form must not tell who is subscribed.
    return web.pages.render("check-inbox.html")
