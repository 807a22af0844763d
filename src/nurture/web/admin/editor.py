"""The in-browser content editor: the live files, one file's editor with checks, and saving an edit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.content.snapshots import ContentFileError, FileDiff, check_path
from nurture.domain.problems import ContentProblem, Severity
from nurture.services.content_editing import ContentConflict, EditRefused, NoContentYet
from nurture.store.content_snapshots import SavedVersion, UnknownVersion
from nurture.web.admin.context import Admin, AdminContext, CheckedFields, SignedIn, first, message, page
from nurture.web.admin.editor_preview import Target, drafts_of, normalized_text, preview_src
from nurture.web.admin.formatting import format_utc
from nurture.web.admin.roles import CanEdit, has_role

router = APIRouter(prefix="/admin/content", include_in_schema=False)

MAX_NOTE: Final = 200


def database_mode(admin: AdminContext) -> bool:
    return admin.settings.content_source == "database"


def files_mode(admin: AdminContext, request: Request, user: str) -> Response:
    return message(admin, request, 409, "Editing in the browser is off",
                   "Content is read from the sequences/ and templates/ folders on each server. "
                   "To edit it here, set NURTURE_CONTENT_SOURCE=database and run "
                   "`nurture content import` once.", user=user)


def no_content(admin: AdminContext, request: Request, user: str) -> Response:
    return message(admin, request, 404, "No content saved yet", str(NoContentYet()), user=user)


def when(moment: datetime) -> str:
    return format_utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def version_facts(version: SavedVersion) -> dict[str, Any]:
    return {"number": version.number, "author": version.author, "action": version.action,
            "note": version.note, "when": when(version.saved_at), "based_on": version.based_on}


def problem_json(problem: ContentProblem, path: str = "") -> dict[str, Any]:
    file = problem.path.as_posix()
    return {"file": file, "line": problem.line, "message": problem.message.rstrip("."), "fix": problem.fix,
            "severity": problem.severity.value, "here": file == path}


def sorted_problems(problems: list[ContentProblem], path: str) -> list[dict[str, Any]]:
    """This file's problems first, errors before warnings, by line."""
    found = [problem_json(problem, path) for problem in problems]
    return sorted(found, key=lambda p: (not p["here"], p["severity"] != Severity.ERROR.value,
                                        p["file"], p["line"]))


def file_groups(paths: list[str]) -> list[dict[str, Any]]:
    """The files by kind: sequences, emails by folder, locales, then the rest."""
    groups: dict[str, list[dict[str, str]]] = {}
    for path in sorted(paths):
        folder, _, name = path.rpartition("/")
        if folder == "sequences":
            title = "Sequences"
        elif folder.startswith("templates/emails/"):
            title = "Emails: " + folder.removeprefix("templates/emails/")
        elif folder == "templates/locales":
            title = "Locales"
        else:
            title = "Other files: " + folder.removeprefix("templates/")
        url = f"/admin/content/edit?{urlencode({'path': path})}"
        groups.setdefault(title, []).append({"path": path, "name": name, "url": url})
    order = sorted(groups, key=lambda t: (not t.startswith("Sequences"), t.startswith("Other"), t))
    return [{"title": title, "files": groups[title], "id": f"group-{index}"}
            for index, title in enumerate(order)]


@router.api_route("", methods=["GET", "HEAD"])
async def content(request: Request, admin: Admin, user: SignedIn) -> Response:
    if not database_mode(admin):
        return page(admin, request, "content.html", user=user, section="content",
                    database=False, version=None, groups=[])
    editor = admin.runtime.content_editor()
    try:
        live = await run_in_threadpool(editor.live)
    except NoContentYet:
        return no_content(admin, request, user)
    return page(admin, request, "content.html", user=user, section="content", database=True,
                version=version_facts(live.version), groups=file_groups(list(live.files)),
                can_edit=has_role(admin, user, "editor"))


def diff_view(diff: FileDiff) -> dict[str, Any]:
    """A file's unified diff with each line marked: added, removed, a hunk header or context."""
    lines = []
    for line in diff.lines:
        kind = ("hunk" if line.startswith("@@") else "added" if line.startswith("+")
                else "removed" if line.startswith("-") else "same")
        lines.append({"kind": kind, "text": line})
    return {"path": diff.path, "change": diff.change, "lines": lines}


@dataclass(frozen=True)
class Conflict:
    based_on: int | None
    latest: int
    diffs: list[dict[str, Any]]
    """Each file's diff_view."""
    same_file: bool


def _targets(request: Request, admin: AdminContext, number: int,
             path: str) -> tuple[list[Target], list[Target]]:
    return drafts_of(request).index(admin, number).targets(path)


async def edit_page(admin: AdminContext, request: Request, user: str, *, path: str, text: str,
                    version: SavedVersion, status: int = 200, note: str = "",
                    problems: list[dict[str, Any]] | None = None,
                    conflict: Conflict | None = None) -> Response:
    """The editor for `path` at `version`, holding `text`, with its preview beside it."""
    uses, others = await run_in_threadpool(_targets, request, admin, version.number, path)
    wanted = request.query_params.get("target", "")
    chosen = next((t for t in [*uses, *others] if t.value == wanted),
                  uses[0] if uses else others[0] if others else None)
    key = drafts_of(request).put(user, version.number, path, text)
    return page(admin, request, "content-edit.html", user=user, section="content",
                status=status, path=path, text=text, version=version_facts(version), note=note,
                can_edit=has_role(admin, user, "editor"), problems=problems or [],
                conflict=conflict, uses=uses, others=others,
                chosen=chosen.value if chosen else "", preview_src=preview_src(key, chosen),
                draft=key)


@router.api_route("/edit", methods=["GET", "HEAD"])
async def edit(request: Request, admin: Admin, user: SignedIn) -> Response:
    if not database_mode(admin):
        return files_mode(admin, request, user)
    try:
        live = await run_in_threadpool(admin.runtime.content_editor().live)
    except NoContentYet:
        return no_content(admin, request, user)
    path = request.query_params.get("path", "")
    if path not in live.files:
        return message(admin, request, 404, "No such file",
                       f"The live version has no file '{path[:120]}'. Choose one from the "
                       "content page.", user=user)
    return await edit_page(admin, request, user, path=path, text=live.files[path],
                           version=live.version)


def _posted(fields: dict[str, list[str]]) -> tuple[str, int, str]:
    """The posted path, version edited from, and text; ValueError saying what is wrong."""
    path = check_path(first(fields, "path") or "")
    try:
        based_on = int(first(fields, "based_on") or "")
    except ValueError:
        raise ValueError("the version this edit started from is missing: reload the editor") \
            from None
    texts = fields.get("text")
    if not texts:
        raise ValueError("the text of the file is missing")
    return path, based_on, texts[0]


def _check(admin: AdminContext, path: str, based_on: int, text: str) -> list[ContentProblem]:
    editor = admin.runtime.content_editor()
    return editor.check(editor.edited(based_on, path, normalized_text(text)))


@router.post("/check")
async def check(fields: CheckedFields, admin: Admin, user: CanEdit) -> Response:
    """Every problem validate finds with the posted text in place, as JSON."""
    try:
        path, based_on, text = _posted(fields)
        problems = await run_in_threadpool(_check, admin, path, based_on, text)
    except (ContentFileError, ValueError) as error:
        path = first(fields, "path") or ""
        return JSONResponse({"problems": [{
            "file": path[:120], "line": 0, "message": str(error), "fix": "", "here": True,
            "severity": "error"}], "errors": 1, "warnings": 0}, status_code=422)
    except UnknownVersion as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    found = sorted_problems(problems, path)
    errors = sum(1 for p in found if p["severity"] == Severity.ERROR.value)
    return JSONResponse({"problems": found, "errors": errors, "warnings": len(found) - errors})


def _save(admin: AdminContext, path: str, based_on: int, text: str, user: str,
          note: str) -> SavedVersion:
    editor = admin.runtime.content_editor()
    original = editor.store.files(based_on).get(path, "")
    files = editor.edited(based_on, path, normalized_text(text, original))
    return editor.save(files, author=user, note=note, based_on=based_on)


def conflict_of(admin: AdminContext, error: ContentConflict, path: str = "") -> Conflict:
    """What changed between the version an edit started from and the newest one."""
    editor = admin.runtime.content_editor()
    diffs = editor.diff(error.based_on, error.latest) if error.based_on is not None else []
    return Conflict(error.based_on, error.latest, [diff_view(d) for d in diffs],
                    any(d.path == path for d in diffs))


@router.post("/save")
async def save(request: Request, fields: CheckedFields, admin: Admin, user: CanEdit) -> Response:
    if not database_mode(admin):
        return files_mode(admin, request, user)
    note = (first(fields, "note") or "")[:MAX_NOTE]
    try:
        path, based_on, text = _posted(fields)
        saved = await run_in_threadpool(_save, admin, path, based_on, text, user, note)
    except (ContentFileError, ValueError) as error:
        return message(admin, request, 422, "Nothing was saved", f"{error}.", user=user)
    except UnknownVersion:
        return message(admin, request, 404, "Nothing was saved",
                       "The version this edit started from is gone. Open the file again.",
                       user=user)
    except EditRefused as refused:
        store = admin.runtime.content_editor().store
        version = await run_in_threadpool(store.version, based_on)
        return await edit_page(admin, request, user, path=path, text=normalized_text(text),
                               version=version, status=422, note=note,
                               problems=sorted_problems(refused.problems, path))
    except ContentConflict as error:
        conflict = await run_in_threadpool(conflict_of, admin, error, path)
        store = admin.runtime.content_editor().store
        newest = await run_in_threadpool(store.version, error.latest)
        return await edit_page(admin, request, user, path=path, text=normalized_text(text),
                               version=newest, status=409, note=note, conflict=conflict)
    return RedirectResponse(f"/admin/content/history?saved={saved.number}#version-{saved.number}",
                            status_code=303)
