"""The admin pages under /admin: sequences with timelines, previews and test sends, results and deliveries."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from nurture.config import Settings
from nurture.content.library import Content
from nurture.content.personas import Persona
from nurture.domain.model import WEEKDAY_NAMES, Profile, Sequence, Step
from nurture.domain.people import (
    PersonInvalid,
    check_hesitations,
    check_time_zone,
    clean_first_name,
    normalize_email,
)
from nurture.domain.reasons import KNOWN_REASONS, REASONS
from nurture.engine.planner import TimelineEntry, timeline
from nurture.engine.ports import DeliveryStatus, OutgoingMessage, SendResult
from nurture.services.previews import render_step
from nurture.services.runtime import Runtime
from nurture.smtp.factory import transport_from_settings
from nurture.store.models import Delivery, Enrollment, Subscriber
from nurture.store.stats import DELIVERY_COLUMNS, StepStats, step_stats
from nurture.web.admin_auth import AdminAuth, AdminBusy, AdminOptions
from nurture.web.charts import FunnelStage, funnel_svg, percent_of
from nurture.web.forms import LOCALES
from nurture.web.pages import Pages
from nurture.web.security import CSRF_FIELD, CsrfGuard, SlidingWindowLimiter

log = logging.getLogger(__name__)

# The email's own styles may be inline; nothing in it may run, load or submit anything, and only
# this site may frame it. `sandbox` also holds when the preview is opened on its own in a tab.
PREVIEW_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
PREVIEW_HEADERS: Final = {"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"}
VIEWS: Final = {"desktop": "Desktop width", "phone": "Phone width", "both": "Both widths"}
DEFAULT_NAME: Final = "Sam"
CONTENT_REFRESH_SECONDS: Final = 5.0
RECENT_DEFAULT: Final = 50
RECENT_MAX: Final = 500
MAX_FORM_FIELDS: Final = 60
SIGN_INS_PER_WINDOW: Final = 10
SIGN_IN_WINDOW: Final = timedelta(minutes=15)
MAX_ERROR_TEXT: Final = 200
_ADDRESS: Final = re.compile(r"[^\s<>@\"',;:()\[\]]+@[^\s<>@\"',;:()\[\]]+")
_START_FORMAT: Final = "%Y-%m-%dT%H:%M"


# -- small formatting helpers -------------------------------------------------------------------


def mask_address(email: str) -> str:
    """`asha.k@example.org` -> `a***@e***.org`: enough to tell rows apart, not to write to anyone."""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return "***"
    labels = domain.split(".")
    suffix = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[:1]}***@{domain[:1]}***{suffix}"


def redact_addresses(text: str) -> str:
    """SMTP replies often quote the recipient; the operators' pages show only masked addresses."""
    cleaned = _ADDRESS.sub(lambda match: mask_address(match.group(0).strip(".")), text)
    return cleaned if len(cleaned) <= MAX_ERROR_TEXT else cleaned[: MAX_ERROR_TEXT - 1] + "…"


def format_delay(delay: timedelta) -> str:
    """The sequence files' own notation: 0, 90m, 2d, 1d12h."""
    minutes = int(delay.total_seconds() // 60)
    if minutes <= 0:
        return "0"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return "".join(f"{value}{unit}" for value, unit in ((days, "d"), (hours, "h"), (minutes, "m"))
                   if value)


def format_utc(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def describe_window(sequence: Sequence) -> str:
    window = sequence.window
    days = "every day" if len(window.days) == 7 else ", ".join(
        WEEKDAY_NAMES[day] for day in sorted(window.days))
    end = "24:00" if window.end.hour == 23 and window.end.minute == 59 else f"{window.end:%H:%M}"
    return f"{days}, {window.start:%H:%M}–{end} in each subscriber's time zone"


def _strings(data: ImmutableMultiDict[str, Any]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    return fields


def _first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0].strip() if values else None


# -- the persona chosen on a sequence page ------------------------------------------------------


@dataclass(frozen=True)
class PersonaChoice:
    """A made-up subscriber and a start time, from GET parameters (so a preview has a link)."""

    reasons: frozenset[str] = frozenset()
    discreet: bool = False
    locale: str = "en"
    name: str = DEFAULT_NAME
    """Empty: no first name, as for a subscriber who left it out."""
    zone: str = "UTC"
    start: str = ""
    """Local wall time in `zone`, as an <input type="datetime-local"> sends it."""
    view: str = "desktop"

    def persona(self) -> Persona:
        profile = Profile(time_zone=self.zone, hesitations=self.reasons, discreet=self.discreet,
                          locale=self.locale)
        return Persona(profile=profile, first_name=self.name or None)

    def start_at(self) -> datetime:
        return datetime.strptime(self.start, _START_FORMAT).replace(tzinfo=ZoneInfo(self.zone))

    def pairs(self, *, full: bool = True) -> list[tuple[str, str]]:
        items = [("reasons", reason) for reason in sorted(self.reasons)]
        if self.discreet:
            items.append(("discreet", "yes"))
        items += [("locale", self.locale), ("name", self.name), ("zone", self.zone)]
        if full:
            items += [("start", self.start), ("view", self.view)]
        return items

    def query(self, *, full: bool = True, view: str | None = None) -> str:
        chosen = self if view is None else replace(self, view=view)
        return urlencode(chosen.pairs(full=full))


def parse_choice(fields: Mapping[str, list[str]], now: datetime) -> tuple[PersonaChoice, dict[str, str]]:
    """The choice, with anything unusable replaced by its default and explained in the errors."""
    errors: dict[str, str] = {}
    raw_reasons = fields.get("reasons", [])
    try:
        reasons = check_hesitations(raw_reasons)
    except PersonInvalid:
        errors["reasons"] = "Some reasons are not known; only the ones in the list are used."
        reasons = frozenset(r.strip() for r in raw_reasons) & KNOWN_REASONS
    locale = _first(fields, "locale") or "en"
    if locale not in LOCALES:
        errors["locale"] = "Choose a language from the list."
        locale = "en"
    name = DEFAULT_NAME
    if "name" in fields:
        try:
            name = clean_first_name(_first(fields, "name")) or ""
        except PersonInvalid as error:
            errors["name"] = f"The first name {str(error).removeprefix('first_name: ')}."
    zone = "UTC"
    try:
        zone = check_time_zone(_first(fields, "zone") or "UTC")
    except PersonInvalid:
        errors["zone"] = "Write an IANA time zone such as Europe/London or Asia/Kolkata."
    start = f"{now.astimezone(ZoneInfo(zone)):{_START_FORMAT}}"
    raw_start = _first(fields, "start")
    if raw_start:
        try:
            parsed = datetime.fromisoformat(raw_start)
            if parsed.tzinfo is not None:
                raise ValueError("no zone")
            start = f"{parsed:{_START_FORMAT}}"
        except ValueError:
            errors["start"] = "Write the start as a date and time, e.g. 2026-03-06T20:00."
    view = _first(fields, "view") or "desktop"
    if view not in VIEWS:
        view = "desktop"
    choice = PersonaChoice(reasons=reasons, discreet=_first(fields, "discreet") == "yes",
                           locale=locale, name=name, zone=zone, start=start, view=view)
    return choice, errors


# -- what the pages show ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class StatsRow:
    step: str
    counts: tuple[int, ...]
    unsubscribed_after: int
    paused_after: int
    converted_after: int
    share: str
    known: bool


@dataclass(frozen=True)
class SequenceResults:
    key: str
    name: str
    rows: tuple[StatsRow, ...]
    chart: Markup
    sent: int


@dataclass(frozen=True)
class RecentDelivery:
    address: str
    """Masked: the full address never leaves this module."""
    kind: str
    sequence: str
    step: str
    status: str
    due_at: str
    sent_at: str
    attempts: int
    smtp_code: str
    note: str


@dataclass
class DateRange:
    since: date | None = None
    until: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def since_at(self) -> datetime | None:
        return None if self.since is None else datetime.combine(self.since, datetime.min.time(), UTC)

    @property
    def until_before(self) -> datetime | None:
        """The end as an exclusive instant: `until` is a whole (UTC) day, included."""
        if self.until is None:
            return None
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time(), UTC)


def parse_range(fields: Mapping[str, list[str]]) -> DateRange:
    found = DateRange()
    for name in ("since", "until"):
        raw = _first(fields, name)
        if not raw:
            continue
        try:
            setattr(found, name, date.fromisoformat(raw))
        except ValueError:
            found.errors[name] = "Write the date as YYYY-MM-DD, e.g. 2026-03-01."
    if found.since and found.until and found.until < found.since:
        found.errors["until"] = "The end date must not be before the start date."
        found.until = None
    return found


def step_stats_between(engine: Engine, *, sequence: str | None, since: datetime | None,
                       until: datetime | None) -> dict[tuple[str, str], StepStats]:
    """step_stats for [since, until). It filters only on a lower bound, so an upper bound is the
    difference of two runs; rows written between the two reads can make a count off by a few,
    clamped at zero."""
    result = step_stats(engine, sequence=sequence, since=since)
    if until is None:
        return result
    for key, later in step_stats(engine, sequence=sequence, since=until).items():
        row = result.get(key)
        if row is None:
            continue
        for column, count in later.counts.items():
            row.counts[column] = max(0, row.counts.get(column, 0) - count)
        row.unsubscribed_after = max(0, row.unsubscribed_after - later.unsubscribed_after)
        row.paused_after = max(0, row.paused_after - later.paused_after)
        row.converted_after = max(0, row.converted_after - later.converted_after)
    return result


def recent_deliveries(engine: Engine, *, status: str | None, limit: int) -> list[RecentDelivery]:
    """The latest deliveries by due time (queued ones for the future first), addresses masked."""
    query = (
        select(Subscriber.email, Delivery.kind, Enrollment.sequence_key, Delivery.step_key,
               Delivery.status, Delivery.due_at, Delivery.sent_at, Delivery.attempts,
               Delivery.smtp_code, Delivery.last_error, Delivery.skip_reason)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .order_by(Delivery.due_at.desc(), Delivery.created_at.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        RecentDelivery(
            address=mask_address(row.email), kind=row.kind, sequence=row.sequence_key or "",
            step=row.step_key or "", status=row.status, due_at=format_utc(row.due_at),
            sent_at=format_utc(row.sent_at), attempts=row.attempts,
            smtp_code="" if row.smtp_code is None else str(row.smtp_code),
            note=redact_addresses(row.last_error or row.skip_reason or ""),
        )
        for row in rows
    ]


def _safe_next(target: str | None) -> str:
    """Only a path under /admin: a login link must not send anyone to another site."""
    if not target or not target.startswith("/admin") or "\\" in target:
        return "/admin"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return "/admin"
    return target


# -- the router ---------------------------------------------------------------------------------


def admin_router(settings: Settings, runtime: Runtime, *, clock: Callable[[], datetime],
                 options: AdminOptions,
                 client_ip: Callable[[Request], str | None] | None = None) -> APIRouter:
    """The /admin pages. `client_ip` (the app's ClientAddress, which knows the trusted proxies)
    keys the sign-in rate limit; without it the direct peer is used."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    secure = settings.base_url.startswith("https://")
    pages = Pages(settings.templates_dir / "pages", prefix="admin/", common={
        "site_name": parseaddr(settings.sender)[0] or "Nurture",
        "csrf_field": CSRF_FIELD,
    })

    if not options.enabled:
        @router.api_route("", methods=["GET", "HEAD", "POST"])
        @router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST"])
        async def disabled(request: Request) -> Response:
            return pages.render("disabled.html", status=503, user=None, csrf_token="", section="")

        return router

    auth = AdminAuth(options, settings.secret_key, secure=secure, clock=clock)
    csrf = CsrfGuard(settings.secret_key, secure=secure)
    def content_now() -> Content:
        return runtime.content.fresh(CONTENT_REFRESH_SECONDS)

    sign_in_limit = SlidingWindowLimiter(SIGN_INS_PER_WINDOW, SIGN_IN_WINDOW)

    def peer(request: Request) -> str:
        if client_ip is not None:
            return client_ip(request) or "unknown"
        return request.client.host if request.client else "unknown"

    # -- helpers ----------------------------------------------------------------------------------

    def page(request: Request, template: str, *, user: str | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        # Every page carries the sign-out form, so every page needs a CSRF field.
        cookie = csrf.cookie_value(request)
        response = pages.render(template, status=status, user=user, csrf_token=csrf.field_for(cookie),
                                **context)
        csrf.set_cookie(response, cookie)
        return response

    def message(request: Request, status: int, heading: str, text: str, *,
                user: str | None) -> HTMLResponse:
        return page(request, "message.html", user=user, status=status, heading=heading, text=text,
                    section="")

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/admin/login?{urlencode({'next': target})}", status_code=303)

    def forbidden(request: Request) -> HTMLResponse:
        return message(request, 403, "Please try again",
                       "This form was open for a long time, or your browser didn't send back a "
                       "cookie the admin pages need. Go back, reload the page and send it again.",
                       user=auth.user(request))

    async def read_form(request: Request) -> dict[str, list[str]] | None:
        try:
            form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        except (StarletteHTTPException, MultiPartException, ValueError, KeyError):
            return None
        return _strings(form)

    async def checked_form(request: Request) -> dict[str, list[str]] | Response:
        """The posted fields when the CSRF field is right, else the 403 page."""
        fields = await read_form(request)
        if fields is None or not csrf.valid(request, _first(fields, CSRF_FIELD)):
            return forbidden(request)
        return fields

    # -- sign in and out --------------------------------------------------------------------------

    def login_page(request: Request, *, status: int = 200, error: str = "", name: str = "",
                   target: str = "/admin", notice: str = "") -> HTMLResponse:
        return page(request, "login.html", user=None, status=status, error=error, name=name,
                    next=target, notice=notice, section="")

    @router.api_route("/login", methods=["GET", "HEAD"])
    async def login_form(request: Request) -> Response:
        target = _safe_next(request.query_params.get("next"))
        if auth.user(request) is not None:
            return RedirectResponse(target, status_code=303)
        notice = "You are signed out." if request.query_params.get("signed_out") else ""
        return login_page(request, target=target, notice=notice)

    @router.post("/login")
    async def login(request: Request) -> Response:
        fields = await checked_form(request)
        if isinstance(fields, Response):
            return fields
        name = (_first(fields, "name") or "")[:64]
        password = (fields.get("password") or [""])[0]
        target = _safe_next(_first(fields, "next"))
        retry = sign_in_limit.hit(peer(request), clock())
        if retry is not None:
            minutes = max(1, round(retry / 60))
            limited = message(request, 429, "Too many sign-in attempts",
                              f"Please wait {minutes} minute{'s' if minutes > 1 else ''} and try "
                              "again.", user=None)
            limited.headers["Retry-After"] = str(int(retry) + 1)
            return limited
        try:
            user = await run_in_threadpool(auth.check_password, name, password)
        except AdminBusy:
            return message(request, 503, "Please try again",
                           "Many people are signing in at once. Please try again in a minute.",
                           user=None)
        if user is None:
            # Which of the two was wrong is not said: that would confirm which names exist.
            log.warning("admin sign-in failed")
            return login_page(request, status=401, name=name, target=target,
                              error="That name and password do not match an admin account. "
                                    "Check both and try again.")
        log.info("admin signed in", extra={"admin": user})
        response = RedirectResponse(target, status_code=303)
        auth.start_session(response, user)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        fields = await checked_form(request)
        if isinstance(fields, Response):
            return fields
        response = RedirectResponse("/admin/login?signed_out=1", status_code=303)
        auth.end_session(response)
        return response

    # -- sequences --------------------------------------------------------------------------------

    @router.api_route("", methods=["GET", "HEAD"])
    async def sequences(request: Request) -> Response:
        user = auth.user(request)
        if user is None:
            return to_login(request)
        content = await run_in_threadpool(content_now)
        refused = runtime.content.last_refused
        items = [
            {"key": sequence.key, "name": sequence.name, "steps": len(sequence.steps),
             "window": describe_window(sequence), "url": f"/admin/sequences/{quote(sequence.key)}",
             "results_url": f"/admin/results?{urlencode({'sequence': sequence.key})}"}
            for sequence in sorted(content.sequences.values(), key=lambda s: s.key)
        ]
        return page(request, "sequences.html", user=user, section="sequences", sequences=items,
                    version=content.version,
                    refused=[str(problem) for problem in refused.problems] if refused else [])

    def step_view(content: Content, sequence: Sequence, step: Step, choice: PersonaChoice,
                  entry: TimelineEntry | None, start: datetime) -> StepView:
        persona = choice.persona()
        skipped = ""
        if step.when is not None and not step.when.matches(persona.profile):
            skipped = step.when.describe()
        notes: list[str] = []
        due_local = due_utc = ""
        if entry is not None:
            due_local = f"{entry.due_at_local:%a %d %b %Y %H:%M %Z}"
            due_utc = format_utc(entry.due_at_utc)
            if entry.moved_by_window:
                notes.append("moved into the send window")
            if entry.due_at_local.utcoffset() != start.utcoffset():
                notes.append(f"UTC offset {entry.due_at_local:%z} differs from the start (DST)")
        subject, text, error = step.subject, "", ""
        if not skipped:
            try:
                _, subject, _, text = render_step(settings, content, sequence, step, persona,
                                                  to=persona.email, now=clock())
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
            due_local=due_local, due_utc=due_utc, notes=tuple(notes),
            previews=tuple((width, src) for width in widths) if not skipped and not error else (),
            text=text, error=error,
            test_send_url=f"/admin/sequences/{quote(sequence.key)}/steps/{quote(step.key)}/test-send",
        )

    def sequence_context(key: str, choice: PersonaChoice) -> dict[str, Any] | None:
        content = content_now()
        sequence = content.sequences.get(key)
        if sequence is None:
            return None
        start = choice.start_at()
        timeline_error = ""
        try:
            entries = {entry.step_key: entry
                       for entry in timeline(sequence, choice.persona().profile, start=start)}
        except ValueError as error:
            entries, timeline_error = {}, str(error)
        steps = [step_view(content, sequence, step, choice, entries.get(step.key), start)
                 for step in sequence.steps]
        return {"sequence": sequence, "window": describe_window(sequence),
                "exit_on": sorted(sequence.exit_on), "steps": steps,
                "timeline_error": timeline_error, "start_text": f"{start:%a %d %b %Y %H:%M %Z}"}

    async def sequence_page(request: Request, user: str, key: str, choice: PersonaChoice,
                            errors: Mapping[str, str], *, status: int = 200, notice: str = "",
                            to: str = "", send_error: str = "", sent_step: str = "") -> Response:
        context = await run_in_threadpool(sequence_context, key, choice)
        if context is None:
            return message(request, 404, "No such sequence",
                           f"There is no sequence '{key[:100]}' in the current content.", user=user)
        views = [{"key": view, "label": label, "current": view == choice.view,
                  "url": f"/admin/sequences/{quote(key)}?{choice.query(view=view)}"}
                 for view, label in VIEWS.items()]
        return page(request, "sequence.html", user=user, status=status, section="sequences",
                    choice=choice, reasons=REASONS, locales=LOCALES, errors=errors, views=views,
                    hidden=choice.pairs(), notice=notice, to=to, send_error=send_error,
                    sent_step=sent_step, **context)

    @router.api_route("/sequences/{key}", methods=["GET", "HEAD"])
    async def sequence_detail(request: Request, key: str) -> Response:
        user = auth.user(request)
        if user is None:
            return to_login(request)
        choice, errors = parse_choice(_strings(request.query_params), clock())
        return await sequence_page(request, user, key, choice, errors,
                                   status=422 if errors else 200)

    @router.api_route("/preview/{key}/{step_key}", methods=["GET", "HEAD"])
    async def preview(request: Request, key: str, step_key: str) -> Response:
        if auth.user(request) is None:
            return PlainTextResponse("Please sign in to the admin pages again.", status_code=401,
                                     headers=PREVIEW_HEADERS)
        choice, _ = parse_choice(_strings(request.query_params), clock())

        def render() -> str | None:
            content = content_now()
            sequence = content.sequences.get(key)
            step = sequence.step(step_key) if sequence is not None else None
            if sequence is None or step is None:
                return None
            persona = choice.persona()
            return render_step(settings, content, sequence, step, persona, to=persona.email,
                               now=clock())[2]

        try:
            html = await run_in_threadpool(render)
        except Exception:
            log.exception("admin preview failed", extra={"sequence": key, "step": step_key})
            return PlainTextResponse("This step could not be rendered; the log has details.",
                                     status_code=500, headers=PREVIEW_HEADERS)
        if html is None:
            return PlainTextResponse("There is no such step.", status_code=404,
                                     headers=PREVIEW_HEADERS)
        return HTMLResponse(html, headers=PREVIEW_HEADERS)

    @router.post("/sequences/{key}/steps/{step_key}/test-send")
    async def test_send(request: Request, key: str, step_key: str) -> Response:
        fields = await checked_form(request)
        if isinstance(fields, Response):
            return fields
        user = auth.user(request)
        if user is None:
            return to_login(request)
        choice, errors = parse_choice(fields, clock())
        raw_to = _first(fields, "to") or ""
        if errors:
            return await sequence_page(request, user, key, choice, errors, status=422,
                                       to=raw_to[:254], sent_step=step_key,
                                       send_error="Nothing was sent: the persona has a problem "
                                                  "(see above).")
        try:
            to = normalize_email(raw_to)
        except PersonInvalid as error:
            return await sequence_page(
                request, user, key, choice, errors, status=422, to=raw_to[:254],
                sent_step=step_key,
                send_error=f"The address {str(error).removeprefix('email: ')}")

        def send() -> tuple[str, SendResult] | None:
            content = content_now()
            sequence = content.sequences.get(key)
            step = sequence.step(step_key) if sequence is not None else None
            if sequence is None or step is None:
                return None
            data, subject, _, _ = render_step(settings, content, sequence, step, choice.persona(),
                                              to=to, now=clock(), subject_prefix="[TEST] ")
            transport = transport_from_settings(settings)
            try:
                # Straight to the transport: a test never enters the delivery table or the stats.
                result = transport.send(OutgoingMessage(envelope_from=settings.sender_address,
                                                        recipients=(to,), data=data))
            finally:
                transport.close()
            return subject, result

        sent = await run_in_threadpool(send)
        if sent is None:
            return message(request, 404, "No such step",
                           f"There is no step '{step_key[:100]}' in sequence '{key[:100]}'.",
                           user=user)
        subject, result = sent
        log.info("admin test send", extra={"admin": user, "sequence": key, "step": step_key,
                                           "ok": result.ok, "smtp_code": result.code})
        if not result.ok:
            reply = redact_addresses(f"{result.code or ''} {result.message}".strip())
            return await sequence_page(request, user, key, choice, errors, status=502, to=to,
                                       sent_step=step_key,
                                       send_error=f"The mail server refused the test: {reply}")
        return await sequence_page(request, user, key, choice, errors, to=to, sent_step=step_key,
                                   notice=f"Sent “{subject}” to {to}. Tests are not counted "
                                          "in the results.")

    # -- results ----------------------------------------------------------------------------------

    def results_context(chosen: str | None, dates: DateRange) -> dict[str, Any]:
        content = content_now()
        stats = step_stats_between(runtime.engine, sequence=chosen, since=dates.since_at,
                                   until=dates.until_before)
        keys = sorted({k for k in content.sequences if k != "system"} | {seq for seq, _ in stats})
        if chosen is not None:
            keys = [k for k in keys if k == chosen]
        results = []
        for key in keys:
            sequence = content.sequences.get(key)
            order = [step.key for step in sequence.steps] if sequence is not None else []
            order += sorted(step for seq, step in stats if seq == key and step not in order)
            rows_stats = [stats.get((key, step)) or StepStats(key, step) for step in order]
            first_sent = rows_stats[0].counts.get("sent", 0) if rows_stats else 0
            rows = tuple(
                StatsRow(step=row.step, counts=tuple(row.counts.get(c, 0) for c in DELIVERY_COLUMNS),
                         unsubscribed_after=row.unsubscribed_after, paused_after=row.paused_after,
                         converted_after=row.converted_after,
                         share=percent_of(row.counts.get("sent", 0), first_sent),
                         known=sequence is not None and sequence.step(row.step) is not None)
                for row in rows_stats)
            stages = [FunnelStage(row.step, row.counts.get("sent", 0),
                                  f"{row.unsubscribed_after} unsubscribed after"
                                  if row.unsubscribed_after else "")
                      for row in rows_stats]
            name = sequence.name if sequence is not None else key
            results.append(SequenceResults(
                key=key, name=name, rows=rows, sent=sum(stage.value for stage in stages),
                chart=funnel_svg(f"Emails sent per step: {name}", stages, chart_id=f"funnel-{key}")))
        return {"results": results, "columns": DELIVERY_COLUMNS,
                "all_sequences": sorted(k for k in content.sequences if k != "system")}

    @router.api_route("/results", methods=["GET", "HEAD"])
    async def results(request: Request) -> Response:
        user = auth.user(request)
        if user is None:
            return to_login(request)
        fields = _strings(request.query_params)
        dates = parse_range(fields)
        chosen = _first(fields, "sequence") or None
        context = await run_in_threadpool(results_context, chosen, dates)
        return page(request, "results.html", user=user, section="results",
                    status=422 if dates.errors else 200, errors=dates.errors,
                    since=_first(fields, "since") or "", until=_first(fields, "until") or "",
                    chosen=chosen or "", **context)

    # -- deliveries -------------------------------------------------------------------------------

    @router.api_route("/deliveries", methods=["GET", "HEAD"])
    async def deliveries(request: Request) -> Response:
        user = auth.user(request)
        if user is None:
            return to_login(request)
        status = request.query_params.get("status") or None
        statuses = [item.value for item in DeliveryStatus]
        if status not in statuses:
            status = None
        try:
            limit = min(RECENT_MAX, max(1, int(request.query_params.get("limit", RECENT_DEFAULT))))
        except ValueError:
            limit = RECENT_DEFAULT
        counts = await run_in_threadpool(runtime.store.counts_by_status)
        recent = await run_in_threadpool(recent_deliveries, runtime.engine, status=status,
                                         limit=limit)
        return page(request, "deliveries.html", user=user, section="deliveries",
                    counts=[(name, counts.get(name, 0)) for name in statuses],
                    total=sum(counts.values()), chosen_status=status or "", recent=recent, limit=limit,
                    now=format_utc(clock()))

    return router
