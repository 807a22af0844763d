"""A step's email as the persona would get it: the preview framed in the sequence page, locked down
by its own CSP, and a test send of it to any address (which never enters the delivery table)."""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture.domain.people import PersonInvalid, normalize_email
from nurture.engine.ports import OutgoingMessage, SendResult
from nurture.services.previews import render_step
from nurture.smtp.factory import transport_from_settings
from nurture.web.admin.context import Admin, AdminContext, CheckedFields, SignedIn, first, message, strings
from nurture.web.admin.formatting import redact_addresses
from nurture.web.admin.persona import PersonaChoice, content_locales, parse_choice
from nurture.web.admin.sequences import sequence_page

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", include_in_schema=False)

# The email's own styles may be inline; nothing in it may run, load or submit anything, and only
# this site may frame it. `sandbox` also holds when the preview is opened on its own in a tab.
PREVIEW_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
PREVIEW_HEADERS: Final = {"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"}
TEST_SUBJECT_PREFIX: Final = "[TEST] "


def render_preview(admin: AdminContext, key: str, step_key: str, choice: PersonaChoice) -> str | None:
    """The step's HTML for the persona; None when there is no such step."""
    content = admin.content()
    sequence = content.sequences.get(key)
    step = sequence.step(step_key) if sequence is not None else None
    if sequence is None or step is None:
        return None
    persona = choice.persona()
    return render_step(admin.settings, content, sequence, step, persona, to=persona.email,
                       now=admin.clock())[2]


def send_test(admin: AdminContext, key: str, step_key: str, choice: PersonaChoice,
              to: str) -> tuple[str, SendResult] | None:
    """Send the step to `to` as a test; its subject and the server's answer, or None: no such step."""
    content = admin.content()
    sequence = content.sequences.get(key)
    step = sequence.step(step_key) if sequence is not None else None
    if sequence is None or step is None:
        return None
    settings = admin.settings
    data, subject, _, _ = render_step(settings, content, sequence, step, choice.persona(),
                                      to=to, now=admin.clock(), subject_prefix=TEST_SUBJECT_PREFIX)
    transport = transport_from_settings(settings)
    try:
        # Straight to the transport: a test never enters the delivery table or the stats.
        result = transport.send(OutgoingMessage(envelope_from=settings.sender_address,
                                                recipients=(to,), data=data))
    finally:
        transport.close()
    return subject, result


@router.api_route("/preview/{key}/{step_key}", methods=["GET", "HEAD"])
async def preview(request: Request, key: str, step_key: str, admin: Admin) -> Response:
    if admin.auth.user(request) is None:
        return PlainTextResponse("Please sign in to the admin pages again.", status_code=401,
                                 headers=PREVIEW_HEADERS)
    choice, _ = parse_choice(strings(request.query_params), admin.clock(),
                             content_locales(admin.content()))
    try:
        html = await run_in_threadpool(render_preview, admin, key, step_key, choice)
    except Exception:
        log.exception("admin preview failed", extra={"sequence": key, "step": step_key})
        return PlainTextResponse("This step could not be rendered; the log has details.",
                                 status_code=500, headers=PREVIEW_HEADERS)
    if html is None:
        return PlainTextResponse("There is no such step.", status_code=404, headers=PREVIEW_HEADERS)
    return HTMLResponse(html, headers=PREVIEW_HEADERS)


@router.post("/sequences/{key}/steps/{step_key}/test-send")
async def test_send(request: Request, key: str, step_key: str, fields: CheckedFields,
                    admin: Admin, user: SignedIn) -> Response:
    choice, errors = parse_choice(fields, admin.clock(), content_locales(admin.content()))
    raw_to = first(fields, "to") or ""
    if errors:
        return await sequence_page(admin, request, user, key, choice, errors, status=422,
                                   to=raw_to[:254], sent_step=step_key,
                                   send_error="Nothing was sent: the persona has a problem "
                                              "(see above).")
    try:
        to = normalize_email(raw_to)
    except PersonInvalid as error:
        return await sequence_page(admin, request, user, key, choice, errors, status=422,
                                   to=raw_to[:254], sent_step=step_key,
                                   send_error=f"The address {str(error).removeprefix('email: ')}")
    sent = await run_in_threadpool(send_test, admin, key, step_key, choice, to)
    if sent is None:
        return message(admin, request, 404, "No such step",
                       f"There is no step '{step_key[:100]}' in sequence '{key[:100]}'.", user=user)
    subject, result = sent
    log.info("admin test send", extra={"admin": user, "sequence": key, "step": step_key,
                                       "ok": result.ok, "smtp_code": result.code})
    if not result.ok:
        reply = redact_addresses(f"{result.code or ''} {result.message}".strip())
        return await sequence_page(admin, request, user, key, choice, errors, status=502, to=to,
                                   sent_step=step_key,
                                   send_error=f"The mail server refused the test: {reply}")
    return await sequence_page(admin, request, user, key, choice, errors, to=to, sent_step=step_key,
                               notice=f"Sent “{subject}” to {to}. Tests are not counted "
                                      "in the results.")
