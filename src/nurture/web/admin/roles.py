"""Who may do what in the admin pages: route checks that turn away users whose role is too low."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends
from starlette.requests import Request

from nurture.web.admin.context import Admin, AdminContext, SignedIn, message
from nurture.web.dependencies import Refused

RANKS: Final = {"viewer": 0, "editor": 1, "admin": 2}


def role_of(admin: AdminContext, user: str) -> str:
    """viewer, editor or admin, as NURTURE_ADMIN_ROLES says (viewer when it names no role)."""
    return admin.settings.admin_role(user)


def has_role(admin: AdminContext, user: str, needed: str) -> bool:
    return RANKS.get(role_of(admin, user), 0) >= RANKS[needed]


def _refuse(admin: AdminContext, request: Request, user: str, needed: str) -> Refused:
    what = "change content" if needed == "editor" else "see this page"
    return Refused(message(
        admin, request, 403, "You can't do that here",
        f"Your account ({user}) can look around but not {what}. If you need to, ask whoever "
        f"runs this site to give you the {needed} role in NURTURE_ADMIN_ROLES.", user=user))


async def can_edit(request: Request, admin: Admin, user: SignedIn) -> str:
    """The signed-in user when they may edit content (editors and admins); else the 403 page."""
    if not has_role(admin, user, "editor"):
        raise _refuse(admin, request, user, "editor")
    return user


async def is_admin(request: Request, admin: Admin, user: SignedIn) -> str:
    """The signed-in user when they are an admin; else the 403 page."""
    if not has_role(admin, user, "admin"):
        raise _refuse(admin, request, user, "admin")
    return user


CanEdit = Annotated[str, Depends(can_edit)]
IsAdmin = Annotated[str, Depends(is_admin)]
