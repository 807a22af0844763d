"""The FastAPI app factory: checks the settings, builds the shared WebContext, adds the middleware and
the error pages, and includes one router per area (signup, crisis, links, counted clicks,
preferences, the page for a partner, api, ops, admin). The pages are server-rendered from
templates/pages/ and need no JavaScript."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from nurture.clock import utcnow
from nurture.config import DEFAULT_SECRET_KEY, Environment, Settings, SettingsError
from nurture.services.runtime import Runtime, runtime_from
from nurture.web import api, clicks, crisis, links, ops, partner, preferences, signup
from nurture.web.admin.auth import AdminOptions
from nurture.web.admin.router import install_admin
from nurture.web.context import build_context
from nurture.web.dependencies import Refused, context_of
from nurture.web.locale import LocaleMiddleware, _
from nurture.web.options import WebOptions
from nurture.web.replies import message_page
from nurture.web.security import ApiCors, SecurityMiddleware

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    options: WebOptions | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    if settings.environment is Environment.PRODUCTION and settings.secret_key == DEFAULT_SECRET_KEY:
        raise SettingsError("NURTURE_SECRET_KEY: set a long random value; with the default anyone "
                            "could make links that unsubscribe or erase people")
    options = options if options is not None else WebOptions.from_settings(settings)
    runtime = runtime if runtime is not None else runtime_from(settings)
    web = build_context(settings, runtime, options, clock)

    app = FastAPI(
        title="nurture",
        summary="Signup for a gentle email series; every address is confirmed by its owner.",
        docs_url=None,  # the interactive docs need scripts from a CDN, which the CSP forbids
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.web = web
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(LocaleMiddleware, languages=web.languages)
    app.add_middleware(ApiCors, origins=options.cors_origins)
    app.add_middleware(SecurityMiddleware)
    app.exception_handler(Refused)(refused)
    app.exception_handler(StarletteHTTPException)(http_error)
    for router in (signup.router, crisis.router, links.router, clicks.router, preferences.router,
                   partner.router, api.router, ops.router):
        app.include_router(router)
    install_admin(app, settings, runtime, clock=clock, options=AdminOptions.from_settings(settings),
                  client_ip=web.client_ip)
    return app


async def refused(request: Request, error: Refused) -> Response:
    """A request check's own answer (a bad link, a form without its CSRF field...)."""
    return error.response


async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    """JSON for the API and for anything but a wrong address or method, which get a page."""
    if request.url.path.startswith("/api/") or error.status_code not in (404, 405):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                            headers=error.headers)
    web = context_of(request)
    if error.status_code == 405:
        return message_page(web, 405, _("This page can't do that"),
                            _("Please use the buttons on the page."), link="/",
                            link_text=_("Go to the start page"))
    return message_page(web, 404, _("Page not found"), _("There is no page at this address."),
                        link="/", link_text=_("Go to the start page"))
