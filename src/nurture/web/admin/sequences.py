"""The sequence pages: every sequence with its send window, and one sequence step by step for a
chosen persona and start, with each step's due time, condition, subject and text."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from nurture.content.library import Content
from nurture.domain.model import Sequence, Step
from nurture.domain.reasons import REASONS
from nurture.engine.planner import TimelineEntry, timeline
from nurture.services.previews import render_step
from nurture.web.admin.context import Admin, AdminContext, SignedIn, message, page, strings
from nurture.web.admin.formatting import describe_window, format_delay, format_utc
from nurture.web.admin.persona import VIEWS, PersonaChoice, content_locales, parse_choice

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", include_in_schema=False)


@dataclass(frozen=True)
class StepView:
    key: str
    delay: str
    condition: str
    template: str
    subject: str
    preheader: str
    skipped: str
    due_local: str
    due_utc: str
    notes: tuple[str, ...]
    previews: tuple[tuple[str, str], ...]
    """(view, iframe src) for each width shown."""
    text: str
    error: str
    test_send_url: str


def _due(entry: TimelineEntry | None, start: datetime) -> tuple[str, str, tuple[str, ...]]:
    """When the step is due, locally and in UTC, and what moved it."""
    if entry is None:
        return "", "", ()
    notes: list[str] = []
    if entry.immediate:
        notes.append("at once after confirming, whatever the send window")
    if entry.moved_by_window:
        notes.append("moved into the send window")
    if entry.due_at_local.utcoffset() != start.utcoffset():
        notes.append(f"UTC offset {entry.due_at_local:%z} differs from the start (DST)")
    return f"{entry.due_at_local:%a %d %b %Y %H:%M %Z}", format_utc(entry.due_at_utc), tuple(notes)


def step_view(admin: AdminContext, content: Content, sequence: Sequence, step: Step,
              choice: PersonaChoice, entry: TimelineEntry | None, start: datetime) -> StepView:
    persona = choice.persona()
    skipped = ""
    if step.when is not None and not step.when.matches(persona.profile):
        skipped = step.when.describe()
    due_local, due_utc, notes = _due(entry, start)
    subject, text, error = step.subject, "", ""
    if not skipped:
        try:
            _, subject, _, text = render_step(admin.settings, content, sequence, step, persona,
                                              to=persona.email, now=admin.clock())
        except Exception:
            log.exception("admin preview failed", extra={"sequence": sequence.key,
                                                         "step": step.key})
            error = "This step could not be rendered for this persona; the log has details."
    src = f"/admin/preview/{quote(sequence.key)}/{quote(step.key)}?{choice.query(full=False)}"
    widths = ("desktop", "phone") if choice.view == "both" else (choice.view,)
    return StepView(
        key=step.key, delay=format_delay(step.delay),
        condition=step.when.describe() if step.when is not None else "everyone",
        template=step.template, subject=subject, preheader=step.preheader, skipped=skipped,
        due_local=due_local, due_utc=due_utc, notes=notes,
        previews=tuple((width, src) for width in widths) if not skipped and not error else (),
        text=text, error=error,
        test_send_url=f"/admin/sequences/{quote(sequence.key)}/steps/{quote(step.key)}/test-send",
    )


def sequence_context(admin: AdminContext, key: str, choice: PersonaChoice) -> dict[str, Any] | None:
    content = admin.content()
    sequence = content.sequences.get(key)
    if sequence is None:
        return None
    start = choice.start_at()
    timeline_error = ""
    # People join the sequences of the selection rules by confirming their address.
    by_confirming = sequence.key in content.confirmation_starts
    try:
        entries = {entry.step_key: entry
                   for entry in timeline(sequence, choice.persona().profile, start=start,
                                         at_confirmation=by_confirming)}
    except ValueError as error:
        entries, timeline_error = {}, str(error)
    steps = [step_view(admin, content, sequence, step, choice, entries.get(step.key), start)
             for step in sequence.steps]
    return {"sequence": sequence, "window": describe_window(sequence),
            "exit_on": sorted(sequence.exit_on), "steps": steps,
            "timeline_error": timeline_error, "start_text": f"{start:%a %d %b %Y %H:%M %Z}",
            "by_confirming": by_confirming}


async def sequence_page(admin: AdminContext, request: Request, user: str, key: str,
                        choice: PersonaChoice, errors: Mapping[str, str], *, status: int = 200,
                        notice: str = "", to: str = "", send_error: str = "",
                        sent_step: str = "") -> Response:
    """One sequence for the chosen persona; after a test send, with its outcome by that step."""
    context = await run_in_threadpool(sequence_context, admin, key, choice)
    if context is None:
        return message(admin, request, 404, "No such sequence",
                       f"There is no sequence '{key[:100]}' in the current content.", user=user)
    views = [{"key": view, "label": label, "current": view == choice.view,
              "url": f"/admin/sequences/{quote(key)}?{choice.query(view=view)}"}
             for view, label in VIEWS.items()]
    return page(admin, request, "sequence.html", user=user, status=status, section="sequences",
                choice=choice, reasons=REASONS, locales=content_locales(admin.content()),
                errors=errors, views=views,
                hidden=choice.pairs(), notice=notice, to=to, send_error=send_error,
                sent_step=sent_step, **context)


@router.api_route("", methods=["GET", "HEAD"])
async def sequences(request: Request, admin: Admin, user: SignedIn) -> Response:
    content = await run_in_threadpool(admin.content)
    refused = admin.runtime.content.last_refused
    items = [
        {"key": sequence.key, "name": sequence.name, "steps": len(sequence.steps),
         "window": describe_window(sequence), "url": f"/admin/sequences/{quote(sequence.key)}",
         "results_url": f"/admin/results?{urlencode({'sequence': sequence.key})}"}
        for sequence in sorted(content.sequences.values(), key=lambda s: s.key)
    ]
    return page(admin, request, "sequences.html", user=user, section="sequences", sequences=items,
                version=content.version,
                refused=[str(problem) for problem in refused.problems] if refused else [])


@router.api_route("/sequences/{key}", methods=["GET", "HEAD"])
async def sequence_detail(request: Request, key: str, admin: Admin, user: SignedIn) -> Response:
    choice, errors = parse_choice(strings(request.query_params), admin.clock(),
                                  content_locales(admin.content()))
    return await sequence_page(admin, request, user, key, choice, errors,
                               status=422 if errors else 200)
