"""The admin pages when no admin users are configured: every /admin address says they are off."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from nurture.web.pages import Pages

router = APIRouter(prefix="/admin", include_in_schema=False)


async def admin_pages_of(request: Request) -> Pages:
    pages = request.app.state.admin_pages
    if not isinstance(pages, Pages):
        raise TypeError("app.state.admin_pages is set by install_admin")
    return pages


@router.api_route("", methods=["GET", "HEAD", "POST"])
@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST"])
async def disabled(pages: Annotated[Pages, Depends(admin_pages_of)]) -> Response:
    return pages.render("disabled.html", status=503, user=None, csrf_token="", section="")
