"""The JSON API: signups from a form embedded on another site (the same rules and double opt-in as
the page), and events from a booking system, authenticated by X-API-Key."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from nurture.services.events import record_event
from nurture.web.crisis import load_crisis
from nurture.web.dependencies import ApiKeyMatches, Caller, SignupLimit, Web
from nurture.web.forms import (
    CONSENT_TEXT_SHA256,
    CrisisDirectoryModel,
    CrisisLineModel,
    CrisisModel,
    SignupAccepted,
    SignupNotTaken,
    SignupRequest,
    check_signup,
)
from nurture.web.locale import crisis_locale, locale_keys
from nurture.web.signup import take_signup

router = APIRouter()


class EventRequest(BaseModel):
    event: Literal["consult_booked"]


class EventAccepted(BaseModel):
    ended: int
    started: list[str]


@router.post(
    "/api/v1/subscribers",
    status_code=202,
    response_model=SignupAccepted,
    responses={
        200: {"model": SignupNotTaken, "description": "The person said they are unsafe or "
              "in crisis: nothing was stored; show these resources."},
        422: {"description": "A field is missing or not acceptable."},
        429: {"description": "Too many signups from this address or network; try later."},
    },
    summary="Sign someone up (double opt-in)",
    description="For a form embedded on another site. The answer is the same whether the "
                "address is new, pending, already subscribed or blocked; a confirmation email "
                "goes out only when one is due. Nothing is sent until its link is clicked.",
)
async def api_signup(body: SignupRequest, web: Web, caller: Caller, limit: SignupLimit) -> Response:
    values = body.values()
    if values.safety == "yes":
        crisis = load_crisis(web.runtime.content.templates_dir,
                             crisis_locale(values.locale, values.time_zone))
        directory = crisis.directory
        payload = SignupNotTaken(crisis=CrisisModel(
            heading=crisis.heading, text=crisis.text,
            lines=[CrisisLineModel(name=line.name, contact=line.contact, note=line.note)
                   for line in crisis.lines],
            directory=CrisisDirectoryModel(name=directory.name, url=directory.url)
            if directory is not None else None,
            framing=crisis.framing))
        return JSONResponse(payload.model_dump(), status_code=200)
    accepted = JSONResponse(SignupAccepted().model_dump(), status_code=202)
    if values.honeypot:
        return accepted
    now = web.clock()
    check = check_signup(values)
    retry = limit(check.person.email if check.person else None, now)
    if retry is not None:
        return JSONResponse({"detail": "Too many signups; please try again later."},
                            status_code=429, headers={"Retry-After": str(int(retry) + 1)})
    if check.errors:
        # A program reads this: the locales it may send come with the message.
        known = {"locale": f" Known locales: {', '.join(locale_keys())}."}
        return JSONResponse({"detail": [
            {"loc": ["body", "unsafe" if name == "safety" else name],
             "msg": message + known.get(name, ""), "type": "value_error"}
            for name, message in check.errors.items()
        ]}, status_code=422)
    await take_signup(web, check, caller.consent("signup", web.api_source,
                                                 text_sha256=CONSENT_TEXT_SHA256), now)
    return accepted


@router.post(
    "/api/v1/subscribers/{subscriber_id}/events",
    status_code=202,
    response_model=EventAccepted,
    responses={401: {"description": "Missing or wrong X-API-Key."},
               404: {"description": "No active subscriber with this id."},
               422: {"description": "Unknown event."}},
    summary="Report an event for a subscriber (consult_booked)",
    description="For a booking system: `consult_booked` ends the sequences that exit on it "
                "and starts their follow-up. Repeating an event changes nothing more.",
)
async def subscriber_event(subscriber_id: UUID, body: EventRequest, web: Web,
                           key_matches: ApiKeyMatches) -> Response:
    if not key_matches:
        return JSONResponse({"detail": "missing or wrong X-API-Key"}, status_code=401)
    runtime = web.runtime
    outcome = await run_in_threadpool(record_event, runtime.engine, runtime.content.current,
                                      subscriber_id, body.event, source="api", now=web.clock())
    if not outcome.found:
        return JSONResponse({"detail": "no active subscriber with this id"}, status_code=404)
    return JSONResponse(EventAccepted(ended=outcome.ended,
                                      started=list(outcome.started)).model_dump(),
                        status_code=202)
