"""The public pages' shared answers: a message page, a form page carrying its CSRF field, and the
refusals any route can give (a bad or expired link, a form sent without its cookie, nothing left)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from starlette.requests import Request

from nurture.web.context import WebContext, confirm_days
from nurture.web.locale import _, ngettext
from nurture.web.security import CSRF_FIELD


def message_page(web: WebContext, status: int, heading: str, message: str, *, link: str = "",
                 link_text: str = "") -> HTMLResponse:
    return web.pages.render("token-error.html", status=status, heading=heading, message=message,
                            link=link, link_text=link_text)


def form_page(web: WebContext, request: Request, name: str, *, status: int = 200,
              **context: Any) -> HTMLResponse:
    """A page with a form: its CSRF field matches the cookie set (or kept) with it."""
    cookie = web.csrf.cookie_value(request)
    response = web.pages.render(name, status=status, csrf_field=CSRF_FIELD,
                                csrf_token=web.csrf.field_for(cookie), **context)
    web.csrf.set_cookie(response, cookie)
    return response


def bad_link(web: WebContext) -> HTMLResponse:
    return message_page(web, 400, _("This link doesn't work"),
                        _("It may have been cut short when it was copied. Please open it again "
                          "from the email, or copy the whole link into your browser."))


def expired_link(web: WebContext) -> HTMLResponse:
    days = confirm_days(web.options)
    return message_page(web, 410, _("This link has expired"),
                        ngettext("Confirmation links work for %(count)s day. Please sign up again "
                                 "and we'll send you a fresh one.",
                                 "Confirmation links work for %(count)s days. Please sign up again "
                                 "and we'll send you a fresh one.", days) % {"count": days},
                        link="/", link_text=_("Sign up again"))


def expired_quiet_link(web: WebContext) -> HTMLResponse:
    months = max(1, web.options.quiet_link_max_age_seconds // (30 * 86400))
    return message_page(web, 410, _("This link is from an older email"),
                        ngettext("These links work for about %(count)s month after an email is "
                                 "sent, so nothing has changed. The same links in a more recent "
                                 "email still work.",
                                 "These links work for about %(count)s months after an email is "
                                 "sent, so nothing has changed. The same links in a more recent "
                                 "email still work.", months) % {"count": months})


def forbidden(web: WebContext) -> HTMLResponse:
    return message_page(web, 403, _("Please try again"),
                        _("This form was open for a long time, or your browser didn't send back "
                          "a cookie this site needs to keep the form safe. Please go back, "
                          "reload the page and send it again."))


def gone(web: WebContext) -> HTMLResponse:
    return message_page(web, 404, _("There's nothing here any more"),
                        _("We don't hold any details for this link. If you erased your data, "
                          "that is why: it's gone."), link="/", link_text=_("Go to the start page"))


def rate_limited(web: WebContext, retry_after: float) -> HTMLResponse:
    minutes = max(1, round(retry_after / 60))
    response = web.pages.render("rate-limited.html", status=429, minutes=minutes)
    response.headers["Retry-After"] = str(int(retry_after) + 1)
    return response
