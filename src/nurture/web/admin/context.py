"""What every admin page shares: the AdminContext kept on app.state, the page renderer with its CSRF
field, and the checks a route declares (a signed-in user, a posted form with its CSRF field)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import Depends
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request

from nurture.config import Settings
from nurture.content.library import Content
from nurture.services.runtime import Runtime
from nurture.web.admin.auth import AdminAuth
from nurture.web.dependencies import Refused, read_form
from nurture.web.pages import Pages
from nurture.web.security import CSRF_FIELD, CsrfGuard, SlidingWindowLimiter

CONTENT_REFRESH_SECONDS: Final = 5.0


def admin_pages(settings: Settings) -> Pages:
    return Pages(settings.templates_dir / "pages", prefix="admin/", common={
        "site_name": parseaddr(settings.sender)[0] or "Nurture",
        "csrf_field": CSRF_FIELD,
    })


@dataclass(frozen=True)
class AdminContext:
    """Everything the admin routes share; they get it through the `Admin` dependency."""

    settings: Settings
    runtime: Runtime
    clock: Callable[[], datetime]
    pages: Pages
    auth: AdminAuth
    csrf: CsrfGuard
    sign_in_limit: SlidingWindowLimiter
    client_ip: Callable[[Request], str | None] | None
    """The app's ClientAddress (it knows the trusted proxies); None: the direct peer."""

    def content(self) -> Content:
        """The current content, looking at the files again if a few seconds have passed: marketers
        edit a file and reload the page."""
        return self.runtime.content.fresh(CONTENT_REFRESH_SECONDS)

    def peer(self, request: Request) -> str:
        """Who signs in, for the sign-in rate limit."""
        if self.client_ip is not None:
            return self.client_ip(request) or "unknown"
        return request.client.host if request.client else "unknown"


async def admin_context(request: Request) -> AdminContext:
    context = request.app.state.admin
    if not isinstance(context, AdminContext):
        raise TypeError("app.state.admin is set by install_admin")
    return context


Admin = Annotated[AdminContext, Depends(admin_context)]


# -- pages --------------------------------------------------------------------------------------


def page(admin: AdminContext, request: Request, template: str, *, user: str | None,
         status: int = 200, **context: Any) -> HTMLResponse:
    # Every page carries the sign-out form, so every page needs a CSRF field.
    cookie = admin.csrf.cookie_value(request)
    response = admin.pages.render(template, status=status, user=user,
                                  csrf_token=admin.csrf.field_for(cookie), **context,
                                  role=admin.settings.admin_role(user) if user else "viewer")
    admin.csrf.set_cookie(response, cookie)
    return response


def message(admin: AdminContext, request: Request, status: int, heading: str, text: str, *,
            user: str | None) -> HTMLResponse:
    return page(admin, request, "message.html", user=user, status=status, heading=heading,
                text=text, section="")


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/admin/login?{urlencode({'next': target})}", status_code=303)


# -- fields -------------------------------------------------------------------------------------


def strings(data: ImmutableMultiDict[str, Any]) -> dict[str, list[str]]:
    """The text fields of a form or query string, each name with all its values."""
    fields: dict[str, list[str]] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    return fields


def first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0].strip() if values else None


# -- checks -------------------------------------------------------------------------------------


async def checked_fields(request: Request, admin: Admin) -> dict[str, list[str]]:
    """The posted fields when the CSRF field is right, else the 403 page."""
    form = await read_form(request)
    fields = None if form is None else strings(form)
    if fields is None or not admin.csrf.valid(request, first(fields, CSRF_FIELD)):
        raise Refused(message(
            admin, request, 403, "Please try again",
            "This form was open for a long time, or your browser didn't send back a "
            "cookie the admin pages need. Go back, reload the page and send it again.",
            user=admin.auth.user(request)))
    return fields


CheckedFields = Annotated[dict[str, list[str]], Depends(checked_fields)]


async def signed_in(request: Request, admin: Admin) -> str:
    """The signed-in admin; without a session, a redirect to the sign-in page and back."""
    user = admin.auth.user(request)
    if user is None:
        raise Refused(to_login(request))
    return user


SignedIn = Annotated[str, Depends(signed_in)]
