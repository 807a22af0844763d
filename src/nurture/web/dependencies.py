"""The checks a request passes before a route runs, as FastAPI dependencies that each route declares:
the shared context, who is asking, the posted form and its CSRF field, signed link tokens, the signup
rate limits and the API key. A check that fails raises Refused with the page to answer. The checks
run in the order a route lists them, so a route lists its link token before its form."""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Final
from uuid import UUID

from fastapi import Depends, Header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from nurture.engine.ports import ConsentRecord
from nurture.engine.tokens import TokenExpired, TokenInvalid
from nurture.web.context import WebContext
from nurture.web.options import WebOptions
from nurture.web.replies import bad_link, expired_link, expired_quiet_link, forbidden
from nurture.web.security import CSRF_FIELD

MAX_TOKEN_LENGTH: Final = 300
MAX_FORM_FIELDS: Final = 60
MAX_USER_AGENT: Final = 512


class Refused(Exception):
    """A request check failed: the app answers with `response` and the route does not run."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def context_of(request: Request) -> WebContext:
    """The app's WebContext, which create_app keeps on app.state."""
    context = request.app.state.web
    if not isinstance(context, WebContext):
        raise TypeError("app.state.web is set by create_app")
    return context


async def web_context(request: Request) -> WebContext:
    return context_of(request)


Web = Annotated[WebContext, Depends(web_context)]


# -- who is asking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """Who sent the request, as far as it can be told: what consent records keep about them."""

    ip: str | None
    user_agent: str | None

    def consent(self, kind: str, source: str, *, text_sha256: str | None = None) -> ConsentRecord:
        return ConsentRecord(kind=kind, source=source, ip=self.ip, user_agent=self.user_agent,
                             consent_text_sha256=text_sha256)


def _user_agent(request: Request) -> str | None:
    raw = request.headers.get("user-agent", "")
    cleaned = "".join(ch for ch in raw if unicodedata.category(ch) != "Cc").strip()
    return cleaned[:MAX_USER_AGENT] or None


async def client(request: Request, web: Web) -> Client:
    return Client(ip=web.client_ip(request), user_agent=_user_agent(request))


Caller = Annotated[Client, Depends(client)]


async def signup_limit(web: Web, caller: Caller) -> Callable[[str | None, datetime], float | None]:
    """Counts one signup from this client: seconds to wait when over a limit, else None. The
    address counts only once it is valid (pass None before)."""
    return partial(web.limits.retry_after, caller.ip)


SignupLimit = Annotated[Callable[[str | None, datetime], float | None], Depends(signup_limit)]


# -- forms --------------------------------------------------------------------------------------


async def read_form(request: Request) -> FormData | None:
    """The posted form, or None when it cannot be read (too many fields, files, a broken body)."""
    try:
        return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except (StarletteHTTPException, MultiPartException, ValueError, KeyError):
        return None


PostedForm = Annotated[FormData | None, Depends(read_form)]


async def csrf_passed(request: Request, web: Web, form: PostedForm) -> bool:
    """The form carries the field that matches this browser's CSRF cookie."""
    field = form.get(CSRF_FIELD) if form is not None else None
    return web.csrf.valid(request, field if isinstance(field, str) else None)


CsrfPassed = Annotated[bool, Depends(csrf_passed)]


async def checked_form(web: Web, form: PostedForm, passed: CsrfPassed) -> FormData:
    """The posted form when its CSRF field is right; else the "please try again" page."""
    if form is None or not passed:
        raise Refused(forbidden(web))
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


# -- signed links -------------------------------------------------------------------------------


def _confirm_age(options: WebOptions) -> int:
    return options.confirm_max_age_seconds


def _quiet_link_age(options: WebOptions) -> int:
    return options.quiet_link_max_age_seconds


def signed(purpose: str, *, max_age: Callable[[WebOptions], int] | None = None,
           expired: Callable[[WebContext], Response] = expired_link,
           ) -> Callable[[str, WebContext], Awaitable[UUID]]:
    """A dependency: the subscriber named by the path's `token`, signed for `purpose`. Links with a
    `max_age` expire: confirmation links, and the quiet links that report a step forward."""

    async def subscriber(token: str, web: Web) -> UUID:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Refused(bad_link(web))
        seconds = max_age(web.options) if max_age is not None else None
        try:
            return web.signer.verify(purpose, token, max_age_seconds=seconds)
        except TokenExpired:
            raise Refused(expired(web)) from None
        except TokenInvalid:
            raise Refused(bad_link(web)) from None

    return subscriber


def _quiet(purpose: str) -> Callable[[str, WebContext], Awaitable[UUID]]:
    return signed(purpose, max_age=_quiet_link_age, expired=expired_quiet_link)


ConfirmToken = Annotated[UUID, Depends(signed("confirm", max_age=_confirm_age))]
UnsubscribeToken = Annotated[UUID, Depends(signed("unsubscribe"))]
PreferencesToken = Annotated[UUID, Depends(signed("preferences"))]
# The quiet links of emails (engine/tokens.py LinkMaker): "we booked a call", "my partner said
# yes", "I've started on my own".
BookedToken = Annotated[UUID, Depends(_quiet("booked"))]
PartnerYesToken = Annotated[UUID, Depends(_quiet("partner_yes"))]
StartedSoloToken = Annotated[UUID, Depends(_quiet("started_solo"))]


# -- the JSON API -------------------------------------------------------------------------------


async def api_key_matches(web: Web, x_api_key: Annotated[str | None, Header()] = None) -> bool:
    """The request's X-API-Key is the configured one (no key configured: nothing matches)."""
    expected = web.settings.api_key
    return bool(expected and x_api_key
                and hmac.compare_digest(x_api_key.encode(), expected.encode()))


ApiKeyMatches = Annotated[bool, Depends(api_key_matches)]
