"""The admin pages put together: their shared AdminContext on app.state and one router per area, or,
with no admin users configured, a router that says the pages are off."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from starlette.requests import Request

from nurture.config import Settings
from nurture.services.runtime import Runtime
from nurture.web.admin import (
    deliveries,
    disabled,
    editor,
    editor_history,
    editor_preview,
    previews,
    results,
    sequences,
    sign_in,
)
from nurture.web.admin.auth import AdminAuth, AdminOptions
from nurture.web.admin.context import AdminContext, admin_pages
from nurture.web.security import CsrfGuard, SlidingWindowLimiter

AREAS = (sign_in.router, sequences.router, previews.router, results.router, deliveries.router,
         editor.router, editor_preview.router, editor_history.router)


def install_admin(app: FastAPI, settings: Settings, runtime: Runtime, *,
                  clock: Callable[[], datetime], options: AdminOptions,
                  client_ip: Callable[[Request], str | None] | None = None) -> None:
    """Add the /admin pages to `app`. `client_ip` (the app's ClientAddress, which knows the trusted
    proxies) keys the sign-in rate limit; without it the direct peer is used."""
    pages = admin_pages(settings)
    if not options.enabled:
        app.state.admin_pages = pages
        app.include_router(disabled.router)
        return
    secure = settings.base_url.startswith("https://")
    app.state.admin = AdminContext(
        settings=settings, runtime=runtime, clock=clock, pages=pages,
        auth=AdminAuth(options, settings.secret_key, secure=secure, clock=clock),
        csrf=CsrfGuard(settings.secret_key, secure=secure),
        sign_in_limit=SlidingWindowLimiter(sign_in.SIGN_INS_PER_WINDOW, sign_in.SIGN_IN_WINDOW),
        client_ip=client_ip,
    )
    for area in AREAS:
        app.include_router(area)
