"""The content history, diffs between versions, restores, and the admins' audit log and user list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.services.content_editing import ContentConflict, EditRefused
from nurture.store.content_snapshots import UnknownVersion
from nurture.web.admin.context import Admin, AdminContext, CheckedFields, SignedIn, first, message, page
from nurture.web.admin.editor import (
    Conflict,
    conflict_of,
    database_mode,
    diff_view,
    files_mode,
    sorted_problems,
    version_facts,
    when,
)
from nurture.web.admin.roles import CanEdit, IsAdmin, has_role, role_of

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.api_route("/content/history", methods=["GET", "HEAD"])
async def history(request: Request, admin: Admin, user: SignedIn) -> Response:
    if not database_mode(admin):
        return files_mode(admin, request, user)
    store = admin.runtime.content_editor().store
    versions = await run_in_threadpool(store.versions)
    try:
        saved = int(request.query_params.get("saved", ""))
    except ValueError:
        saved = None
    numbers = [version.number for version in versions]
    return page(admin, request, "content-history.html", user=user, section="history",
                versions=[version_facts(version) for version in versions], saved=saved,
                latest=numbers[0] if numbers else None, numbers=numbers,
                can_edit=has_role(admin, user, "editor"))


def _number(raw: str | None) -> int | None:
    try:
        return int(raw or "")
    except ValueError:
        return None


@router.api_route("/content/diff", methods=["GET", "HEAD"])
async def diff(request: Request, admin: Admin, user: SignedIn) -> Response:
    if not database_mode(admin):
        return files_mode(admin, request, user)
    old, new = _number(request.query_params.get("old")), _number(request.query_params.get("new"))
    if old is None or new is None:
        return message(admin, request, 422, "Choose two versions",
                       "Give the two version numbers to compare, such as old=3 and new=4.",
                       user=user)
    editor = admin.runtime.content_editor()
    try:
        diffs = await run_in_threadpool(editor.diff, old, new)
        versions = [await run_in_threadpool(editor.store.version, n) for n in (old, new)]
    except UnknownVersion as error:
        return message(admin, request, 404, "No such version", f"{str(error).capitalize()}.",
                       user=user)
    return page(admin, request, "content-diff.html", user=user, section="history",
                old=version_facts(versions[0]), new=version_facts(versions[1]),
                diffs=[diff_view(item) for item in diffs])


def conflict_page(admin: AdminContext, request: Request, user: str, number: int,
                  conflict: Conflict) -> Response:
    return page(admin, request, "content-restore.html", user=user, section="history",
                status=409, number=number, conflict=conflict,
                diffs=conflict.diffs, problems=[])


@router.post("/content/history/{number}/restore")
async def restore(request: Request, number: int, fields: CheckedFields, admin: Admin,
                  user: CanEdit) -> Response:
    if not database_mode(admin):
        return files_mode(admin, request, user)
    editor = admin.runtime.content_editor()
    based_on = _number(first(fields, "based_on"))
    try:
        saved = await run_in_threadpool(editor.restore, number, author=user, based_on=based_on)
    except UnknownVersion as error:
        return message(admin, request, 404, "No such version", f"{str(error).capitalize()}.",
                       user=user)
    except ContentConflict as error:
        conflict = await run_in_threadpool(conflict_of, admin, error)
        return conflict_page(admin, request, user, number, conflict)
    except EditRefused as refused:
        return page(admin, request, "content-restore.html", user=user, section="history",
                    status=422, number=number, conflict=None, diffs=[],
                    problems=sorted_problems(refused.problems, ""))
    return RedirectResponse(f"/admin/content/history?saved={saved.number}#version-{saved.number}",
                            status_code=303)


@router.api_route("/audit", methods=["GET", "HEAD"])
async def audit(request: Request, admin: Admin, user: IsAdmin) -> Response:
    entries = await run_in_threadpool(admin.runtime.content_editor().store.audit)
    rows = [{"when": when(entry.at), "user": entry.user, "action": entry.action,
             "number": entry.number, "detail": entry.detail} for entry in entries]
    return page(admin, request, "audit.html", user=user, section="audit", entries=rows)


@router.api_route("/users", methods=["GET", "HEAD"])
async def users(request: Request, admin: Admin, user: IsAdmin) -> Response:
    # Names and roles only: the password hashes never leave the settings.
    people = [{"name": name, "role": role_of(admin, name)}
              for name, _ in sorted(admin.settings.admin_users)]
    return page(admin, request, "users.html", user=user, section="users", people=people)
