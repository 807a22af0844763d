"""Signing in to the admin pages and out again: the password form (rate limited per client) and the
session cookie it starts."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.web.admin.auth import AdminBusy
from nurture.web.admin.context import Admin, AdminContext, CheckedFields, first, message, page

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", include_in_schema=False)

SIGN_INS_PER_WINDOW: Final = 10
SIGN_IN_WINDOW: Final = timedelta(minutes=15)
MAX_NAME_LENGTH: Final = 64


def safe_next(target: str | None) -> str:
    """Only a path under /admin: a login link must not send anyone to another site."""
    if not target or not target.startswith("/admin") or "\\" in target:
        return "/admin"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return "/admin"
    return target


def login_page(admin: AdminContext, request: Request, *, status: int = 200, error: str = "",
               name: str = "", target: str = "/admin", notice: str = "") -> HTMLResponse:
    return page(admin, request, "login.html", user=None, status=status, error=error, name=name,
                next=target, notice=notice, section="")


def too_many(admin: AdminContext, request: Request, retry_after: float) -> HTMLResponse:
    minutes = max(1, round(retry_after / 60))
    limited = message(admin, request, 429, "Too many sign-in attempts",
                      f"Please wait {minutes} minute{'s' if minutes > 1 else ''} and try again.",
                      user=None)
    limited.headers["Retry-After"] = str(int(retry_after) + 1)
    return limited


@router.api_route("/login", methods=["GET", "HEAD"])
async def login_form(request: Request, admin: Admin) -> Response:
    target = safe_next(request.query_params.get("next"))
    if admin.auth.user(request) is not None:
        return RedirectResponse(target, status_code=303)
    notice = "You are signed out." if request.query_params.get("signed_out") else ""
    return login_page(admin, request, target=target, notice=notice)


@router.post("/login")
async def login(request: Request, fields: CheckedFields, admin: Admin) -> Response:
    name = (first(fields, "name") or "")[:MAX_NAME_LENGTH]
    password = (fields.get("password") or [""])[0]
    target = safe_next(first(fields, "next"))
    retry = admin.sign_in_limit.hit(admin.peer(request), admin.clock())
    if retry is not None:
        return too_many(admin, request, retry)
    try:
        user = await run_in_threadpool(admin.auth.check_password, name, password)
    except AdminBusy:
        return message(admin, request, 503, "Please try again",
                       "Many people are signing in at once. Please try again in a minute.",
                       user=None)
    if user is None:
        # Which of the two was wrong is not said: that would confirm which names exist.
        log.warning("admin sign-in failed")
        return login_page(admin, request, status=401, name=name, target=target,
                          error="That name and password do not match an admin account. "
                                "Check both and try again.")
    log.info("admin signed in", extra={"admin": user})
    response = RedirectResponse(target, status_code=303)
    admin.auth.start_session(response, user)
    return response


@router.post("/logout")
async def logout(fields: CheckedFields, admin: Admin) -> Response:
    response = RedirectResponse("/admin/login?signed_out=1", status_code=303)
    admin.auth.end_session(response)
    return response
