"""The pages behind the signed links in emails: confirm an address, unsubscribe (with RFC 8058
one-click), and the quiet links that report a step forward (a consult booked, a partner who said
yes, sessions started alone). A GET only ever shows a button: link scanners follow GETs. Each page
speaks for the subscriber's own locale."""

from __future__ import annotations

import logging
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.content.library import UnknownSequence
from nurture.domain.problems import ContentInvalid
from nurture.engine.ports import NewEnrollment
from nurture.services.events import CONSULT_BOOKED, PARTNER_SAID_YES, STARTED_SOLO, record_event
from nurture.store.accounts.types import Account, ConfirmOutcome
from nurture.web.context import WebContext
from nurture.web.dependencies import (
    BookedToken,
    Caller,
    CheckedForm,
    ConfirmToken,
    CsrfPassed,
    PartnerYesToken,
    PostedForm,
    StartedSoloToken,
    UnsubscribeToken,
    Web,
)
from nurture.web.locale import use_locale
from nurture.web.replies import forbidden, form_page, gone, message_page

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


async def speak_for(web: WebContext, subscriber: UUID) -> None:
    """Render the rest of this request in the subscriber's own locale, when they are known."""
    account = await run_in_threadpool(web.accounts.account, subscriber)
    if account is not None:
        use_locale(account.locale)


# -- confirmation -------------------------------------------------------------------------------


@router.api_route("/confirm/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def confirm_form(request: Request, token: str, subscriber: ConfirmToken, web: Web) -> Response:
    # Only shows a button: mail scanners that follow links with GET must not confirm anyone.
    await speak_for(web, subscriber)
    return form_page(web, request, "confirm.html", token=token)


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm(subscriber: ConfirmToken, form: CheckedForm, web: Web, caller: Caller) -> Response:
    await speak_for(web, subscriber)
    now = web.clock()
    record = caller.consent("confirm", web.web_source)
    planned: list[NewEnrollment] = []

    def plan(account: Account) -> NewEnrollment:
        planned.append(web.enroller.plan(account, record, now))
        return planned[-1]

    try:
        outcome = await run_in_threadpool(web.accounts.confirm, subscriber, now=now, plan=plan)
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
    first = planned[-1].first_delivery if planned and outcome is ConfirmOutcome.CONFIRMED else None
    # What the page promises follows the plan: due now (an immediate first step, or inside the
    # window), later in the person's daytime, or nothing new (confirmed before).
    first_email = None if first is None else "now" if first.due_at <= now else "later"
    return web.pages.render("confirmed.html", first_email=first_email,
                            preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")


# -- unsubscribe --------------------------------------------------------------------------------


@router.api_route("/u/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def unsubscribe_form(request: Request, token: str, subscriber: UnsubscribeToken,
                           web: Web) -> Response:
    await speak_for(web, subscriber)
    return form_page(web, request, "unsubscribe.html", token=token,
                     preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(subscriber: UnsubscribeToken, form: PostedForm, csrf_ok: CsrfPassed,
                      web: Web, caller: Caller) -> Response:
    one_click = form is not None and form.get("List-Unsubscribe") == "One-Click"
    if not one_click and not csrf_ok:
        return forbidden(web)
    await speak_for(web, subscriber)
    # RFC 8058: the signed token is the authentication; answer 200 with no cookie, no redirect.
    record = caller.consent("unsubscribe", "one-click" if one_click else web.web_source)
    await run_in_threadpool(web.accounts.unsubscribe, subscriber, consent=record, now=web.clock())
    return web.pages.render("unsubscribed.html", erased=False)


# -- the quiet links: a step forward ends the sequence as a conversion -------------------------


async def quiet_form(request: Request, token: str, subscriber: UUID, web: WebContext,
                     template: str) -> Response:
    # A button, not an action: link scanners must not end anyone's emails.
    await speak_for(web, subscriber)
    return form_page(web, request, template, token=token)


async def quiet_event(subscriber: UUID, web: WebContext, event: str, template: str) -> Response:
    """Record `event` (services/events.py ends the sequences that exit on it and starts their
    follow-ups) and thank the person; the page says more emails follow only when some do."""
    await speak_for(web, subscriber)
    runtime = web.runtime
    outcome = await run_in_threadpool(record_event, runtime.engine, runtime.content.current,
                                      subscriber, event, source="email link", now=web.clock())
    if not outcome.found:
        return gone(web)
    return web.pages.render(template, ended=outcome.ended > 0, follow_up=bool(outcome.started),
                            preferences_url=f"/p/{web.signer.sign('preferences', subscriber)}")


@router.api_route("/booked/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def booked_form(request: Request, token: str, subscriber: BookedToken, web: Web) -> Response:
    return await quiet_form(request, token, subscriber, web, "booked.html")


@router.post("/booked/{token}", response_class=HTMLResponse)
async def booked(subscriber: BookedToken, form: CheckedForm, web: Web) -> Response:
    return await quiet_event(subscriber, web, CONSULT_BOOKED, "booked-thanks.html")


@router.api_route("/yes/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def partner_yes_form(request: Request, token: str, subscriber: PartnerYesToken,
                           web: Web) -> Response:
    return await quiet_form(request, token, subscriber, web, "partner-yes.html")


@router.post("/yes/{token}", response_class=HTMLResponse)
async def partner_yes(subscriber: PartnerYesToken, form: CheckedForm, web: Web) -> Response:
    return await quiet_event(subscriber, web, PARTNER_SAID_YES, "partner-yes-thanks.html")


@router.api_route("/solo/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def started_solo_form(request: Request, token: str, subscriber: StartedSoloToken,
                            web: Web) -> Response:
    return await quiet_form(request, token, subscriber, web, "solo.html")


@router.post("/solo/{token}", response_class=HTMLResponse)
async def started_solo(subscriber: StartedSoloToken, form: CheckedForm, web: Web) -> Response:
    return await quiet_event(subscriber, web, STARTED_SOLO, "solo-thanks.html")
