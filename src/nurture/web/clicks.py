"""The counted redirect of an email's body links (NURTURE_CLICK_COUNTING): `GET /c/{token}` checks
the signature, counts one click on the token's delivery and sends the reader on with a 303.

A token we did not sign redirects nowhere (a plain 404), so the route is no open redirect. Nothing
about the reader is kept or logged: no address, no user agent, not which link it was."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.engine.click_links import CLICK_PATH, ClickSigner
from nurture.engine.tokens import TokenInvalid
from nurture.store.clicks import record_click
from nurture.web.dependencies import Web
from nurture.web.locale import _
from nurture.web.replies import message_page

router = APIRouter(include_in_schema=False)


@router.get(CLICK_PATH + "{token}")
async def counted_link(token: str, web: Web) -> Response:
    try:
        click = ClickSigner(web.settings.secret_key).verify(token)
    except TokenInvalid:
        return message_page(web, 404, _("Page not found"), _("There is no page at this address."),
                            link="/", link_text=_("Go to the start page"))
    if web.settings.click_counting:
        # Links of emails sent while counting was on keep working after it is turned off.
        await run_in_threadpool(record_click, web.runtime.engine, click.delivery_id, web.clock())
    # Not cached: every click is one. The security middleware already sends no Referer on.
    return RedirectResponse(click.url, status_code=303, headers={"Cache-Control": "no-store"})
