"""The content editor's live preview: unsaved drafts rendered in a sandboxed frame under the preview CSP."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.content.library import Content
from nurture.content.snapshots import ContentFileError, check_path, loaded
from nurture.domain.problems import ContentInvalid
from nurture.services.previews import render_step
from nurture.store.content_snapshots import UnknownVersion
from nurture.web.admin.context import Admin, AdminContext, CheckedFields, first
from nurture.web.admin.persona import PersonaChoice
from nurture.web.admin.previews import PREVIEW_HEADERS
from nurture.web.admin.roles import CanEdit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin/content", include_in_schema=False)

DRAFT_SECONDS: Final = 600.0
MAX_DRAFTS: Final = 200
MAX_INDEXED_VERSIONS: Final = 4


@dataclass(frozen=True)
class Target:
    """A step a preview can show, in one locale."""

    sequence: str
    step: str
    locale: str
    label: str

    @property
    def value(self) -> str:
        return f"{self.sequence}|{self.step}|{self.locale}"

    def query(self) -> str:
        return urlencode({"sequence": self.sequence, "step": self.step, "locale": self.locale})


@dataclass(frozen=True)
class StepIndex:
    """Every step of one version, and the templates each step's texts come from."""

    steps: tuple[tuple[str, str, str], ...]
    """(sequence key, step key, template under templates/emails/)."""
    locale_texts: tuple[tuple[str, str, str, str], ...]
    """(sequence key, step key, locale, template) of each per-locale text."""

    @classmethod
    def of(cls, content: Content) -> StepIndex:
        steps = tuple((sequence.key, step.key, step.template)
                      for sequence in sorted(content.sequences.values(), key=lambda s: s.key)
                      for step in sequence.steps)
        texts = tuple(sorted((text.sequence, text.step, text.locale, text.template)
                             for text in content.library.translations.texts()))
        return cls(steps, texts)

    def targets(self, path: str) -> tuple[list[Target], list[Target]]:
        """The steps whose email uses the file at `path` first, then every other step."""
        uses: list[Target] = []
        if path.startswith("sequences/"):
            key = path.removeprefix("sequences/").removesuffix(".yaml")
            uses = [Target(s, k, "en", f"{s}: {k}") for s, k, _ in self.steps if s == key]
        elif path.startswith("templates/emails/"):
            name = path.removeprefix("templates/emails/")
            uses = [Target(s, k, "en", f"{s}: {k}") for s, k, t in self.steps if t == name]
            uses += [Target(s, k, loc, f"{s}: {k} ({loc})")
                     for s, k, loc, t in self.locale_texts if t == name]
        chosen = {(t.sequence, t.step) for t in uses}
        others = [Target(s, k, "en", f"{s}: {k}") for s, k, _ in self.steps
                  if (s, k) not in chosen]
        return uses, others


@dataclass
class Draft:
    user: str
    based_on: int
    path: str
    text: str
    made: float
    rendered: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DraftStore:
    """Unsaved edits by a random id, for a few minutes, so that a sandboxed frame (which sends no
    form) can show them; at most MAX_DRAFTS, the oldest forgotten first. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drafts: OrderedDict[str, Draft] = OrderedDict()
        self._indices: OrderedDict[int, StepIndex] = OrderedDict()

    def put(self, user: str, based_on: int, path: str, text: str) -> str:
        key = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            self._drafts[key] = Draft(user, based_on, path, text, now)
            while self._drafts:
                oldest_key, oldest = next(iter(self._drafts.items()))
                if len(self._drafts) <= MAX_DRAFTS and now - oldest.made < DRAFT_SECONDS:
                    break
                del self._drafts[oldest_key]
        return key

    def get(self, key: str, user: str) -> Draft | None:
        with self._lock:
            draft = self._drafts.get(key)
        if draft is None or draft.user != user or time.monotonic() - draft.made > DRAFT_SECONDS:
            return None
        return draft

    def index(self, admin: AdminContext, number: int) -> StepIndex:
        """The steps of version `number` (loaded once: a version never changes). Slow: call it
        in a thread."""
        with self._lock:
            found = self._indices.get(number)
        if found is not None:
            return found
        try:
            with loaded(admin.runtime.content_editor().store.files(number)) as content:
                found = StepIndex.of(content)
        except ContentInvalid:
            # Saved before today's rules: no steps to choose from, the editor still works.
            found = StepIndex((), ())
        with self._lock:
            self._indices[number] = found
            while len(self._indices) > MAX_INDEXED_VERSIONS:
                self._indices.popitem(last=False)
        return found


def drafts_of(request: Request) -> DraftStore:
    """The app's DraftStore, made on first use."""
    state = request.app.state
    store = getattr(state, "content_drafts", None)
    if not isinstance(store, DraftStore):
        store = state.content_drafts = DraftStore()
    return store


def preview_src(key: str, target: Target | None) -> str:
    query = target.query() if target is not None else ""
    return f"/admin/content/preview/{key}" + (f"?{query}" if query else "")


def render_draft(admin: AdminContext, draft: Draft, sequence_key: str, step_key: str,
                 locale: str) -> str | None:
    """The draft's email for that step and locale; None when the draft has no such step.
    ContentInvalid when the draft would not load. Slow: call it in a thread."""
    cache_key = f"{sequence_key}|{step_key}|{locale}"
    with draft.lock:
        if cache_key in draft.rendered:
            return draft.rendered[cache_key]
        files = admin.runtime.content_editor().edited(draft.based_on, draft.path, draft.text)
        with loaded(files) as content:
            sequence = content.sequences.get(sequence_key)
            step = sequence.step(step_key) if sequence is not None else None
            if sequence is None or step is None:
                return None
            persona = PersonaChoice(locale=locale).persona()
            html = render_step(admin.settings, content, sequence, step, persona,
                               to=persona.email, now=admin.clock())[2]
        draft.rendered[cache_key] = html
        return html


def _plain(text: str, status: int) -> Response:
    return PlainTextResponse(text, status_code=status, headers=PREVIEW_HEADERS)


@router.post("/preview")
async def keep_draft(request: Request, fields: CheckedFields, admin: Admin,
                     user: CanEdit) -> Response:
    """Keeps the posted draft for the preview frame; answers with its frame address."""
    try:
        path = check_path(first(fields, "path") or "")
        based_on = int(first(fields, "based_on") or "")
    except (ContentFileError, ValueError) as error:
        return JSONResponse({"error": str(error)}, status_code=422)
    text = normalized_text(fields.get("text", [""])[0])
    key = drafts_of(request).put(user, based_on, path, text)
    return JSONResponse({"id": key, "src": f"/admin/content/preview/{key}"})


def normalized_text(text: str, original: str = "") -> str:
    """The posted text with the line endings of the file it replaces (browsers send CRLF)."""
    text = text.replace("\r\n", "\n")
    return text.replace("\n", "\r\n") if "\r\n" in original else text


@router.api_route("/preview/{key}", methods=["GET", "HEAD"])
async def show_draft(request: Request, key: str, admin: Admin) -> Response:
    user = admin.auth.user(request)
    if user is None:
        return _plain("Please sign in to the admin pages again.", 401)
    draft = drafts_of(request).get(key, user)
    if draft is None:
        return _plain("This preview has expired. Type a letter in the editor to see it again.", 404)
    query = request.query_params
    sequence, step = query.get("sequence", ""), query.get("step", "")
    locale = query.get("locale", "en")
    if not sequence or not step:
        return _plain("Choose a step to preview beside the editor.", 404)
    try:
        html = await run_in_threadpool(render_draft, admin, draft, sequence, step, locale)
    except ContentInvalid:
        return _plain("The preview will come back once the errors beside the editor are fixed.",
                      422)
    except UnknownVersion:
        return _plain("The version this edit started from is gone.", 404)
    except Exception:
        log.exception("content draft preview failed", extra={"sequence": sequence, "step": step})
        return _plain("This step could not be shown with this edit; the log has details.", 500)
    if html is None:
        return _plain("With this edit there is no such step. Choose another one.", 404)
    return HTMLResponse(html, headers=PREVIEW_HEADERS)
