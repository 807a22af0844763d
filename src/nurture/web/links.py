"""The pages behind the signed links in emails: confirm an address, unsubscribe (with RFC 8058
one-click), and say a consult was booked. A GET only ever shows a button: link scanners follow GETs."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.content.library import UnknownSequence
from nurture.domain.problems import ContentInvalid
from nurture.services.events import CONSULT_BOOKED, record_event
from nurture.store.accounts.types import ConfirmOutcome
from nurture.web.dependencies import (
    BookedToken,
    Caller,
    CheckedForm,
    ConfirmToken,
    CsrfPassed,
    PostedForm,
    UnsubscribeToken,
    Web,
)
from nurture.web.replies import forbidden, form_page, gone, message_page

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


# -- confirmation -------------------------------------------------------------------------------


@router.api_route("/confirm/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def confirm_form(request: Request, token: str, subscriber: ConfirmToken, web: Web) -> Response:
    # Only shows a button: mail scanners that follow links with GET must not confirm anyone.
    return form_page(web, request, "confirm.html", token=token)


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm(subscriber: ConfirmToken, form: CheckedForm, web: Web, caller: Caller) -> Response:
    now = web.clock()
    record = caller.consent("confirm", web.web_source)
    try:
        outcome = await run_in_threadpool(
            web.accounts.confirm, subscriber, now=now,
            plan=lambda account: web.enroller.plan(account, record, now))
    except (UnknownSequence, ContentInvalid):
        log.exception("confirmation could not enroll")
        return message_page(web, 503, "We couldn't finish just now",
                            "Your address is not confirmed yet. Please try the link again in "
                            "a little while.")
    if outcome is ConfirmOutcome.NOT_FOUND:
        return gone(web)
    if outcome is ConfirmOutcome.REFUSED:
        return message_page(web, 409, "This link can't be used any more",
                            "This address has left the list since the link was sent. If you'd "
                            "like the emails again, please sign up again.", link="/",
                            link_text="Sign up again")
    return web.pages.render("confirmed.html",
                            preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")


# -- unsubscribe --------------------------------------------------------------------------------


@router.api_route("/u/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def unsubscribe_form(request: Request, token: str, subscriber: UnsubscribeToken,
                           web: Web) -> Response:
    return form_page(web, request, "unsubscribe.html", token=token,
                     preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(subscriber: UnsubscribeToken, form: PostedForm, csrf_ok: CsrfPassed,
                      web: Web, caller: Caller) -> Response:
    one_click = form is not None and form.get("List-Unsubscribe") == "One-Click"
    if not one_click and not csrf_ok:
        return forbidden(web)
    # RFC 8058: the signed token is the authentication; answer 200 with no cookie, no redirect.
    record = caller.consent("unsubscribe", "one-click" if one_click else web.web_source)
    await run_in_threadpool(web.accounts.unsubscribe, subscriber, consent=record, now=web.clock())
    return web.pages.render("unsubscribed.html", erased=False)


# -- a booked consult ends the sequence as a conversion -----------------------------------------


@router.api_route("/booked/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def booked_form(request: Request, token: str, subscriber: BookedToken, web: Web) -> Response:
    # A button, not an action: link scanners must not end anyone's emails.
    return form_page(web, request, "booked.html", token=token)


@router.post("/booked/{token}", response_class=HTMLResponse)
async def booked(subscriber: BookedToken, form: CheckedForm, web: Web) -> Response:
    runtime = web.runtime
    outcome = await run_in_threadpool(record_event, runtime.engine, runtime.content.current,
                                      subscriber, CONSULT_BOOKED, source="email link", now=web.clock())
    if not outcome.found:
        return gone(web)
    return web.pages.render("booked-thanks.html",
                            preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")
