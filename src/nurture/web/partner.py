"""The page for the hesitant partner, /for-your-partner: what a first consult call is like, from the
locale file's booking data. It names no subscriber and takes no token, so it says nothing of anyone's
answers and can be forwarded as it is."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from nurture.web.context import locale_data
from nurture.web.dependencies import Web
from nurture.web.locale import request_locale, use_locale, valid_locale

router = APIRouter(include_in_schema=False)


@router.api_route("/for-your-partner", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def for_your_partner(web: Web, locale: str | None = None) -> Response:
    """The locale a link names (?locale=en-IN), else the one the browser asks for."""
    use_locale(valid_locale(locale))
    data = locale_data(web.runtime, request_locale())
    booking = dict(data.booking) if data is not None else {}
    if web.settings.booking_url:
        booking["url"] = web.settings.booking_url
    return web.pages.render("for-your-partner.html", booking=booking)
