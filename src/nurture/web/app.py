"""The FastAPI app: double opt-in signup, confirmation, one-click unsubscribe, preferences, a JSON signup
API and a health check, with server-rendered pages from templates/pages/ that need no JavaScript."""

from __future__ import annotations

import hmac
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import yaml
from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.staticfiles import StaticFiles

from nurture.clock import utcnow
from nurture.config import DEFAULT_SECRET_KEY, Environment, Settings, SettingsError
from nurture.content.library import ContentHolder, UnknownSequence
from nurture.content.selection import SELECTION_FILE, Selection, load_selection, load_selection_file
from nurture.domain.people import Person
from nurture.domain.problems import ContentInvalid
from nurture.domain.reasons import REASONS
from nurture.engine.enrollment import new_enrollment
from nurture.engine.ports import ConsentRecord, NewEnrollment, SubscriberStatus
from nurture.engine.tokens import TokenExpired, TokenInvalid, TokenSigner
from nurture.rendering.library import CrisisInfo, LocaleError, parse_crisis
from nurture.services.events import CONSULT_BOOKED, record_event
from nurture.services.runtime import Runtime, runtime_from
from nurture.store.accounts import Account, AccountStore, ConfirmOutcome, PendingSignup
from nurture.store.rules import address_hash
from nurture.web.admin import admin_router
from nurture.web.admin_auth import AdminOptions
from nurture.web.forms import (
    CONSENT_TEXT,
    CONSENT_TEXT_SHA256,
    HONEYPOT_FIELD,
    LOCALES,
    SAFETY_QUESTION,
    CrisisLineModel,
    CrisisModel,
    SignupAccepted,
    SignupCheck,
    SignupNotTaken,
    SignupRequest,
    SignupValues,
    check_answers,
    check_signup,
    pause_until,
    signup_values,
)
from nurture.web.ops import ops_router
from nurture.web.options import WebOptions
from nurture.web.pages import Pages
from nurture.web.security import (
    CSRF_FIELD,
    ApiCors,
    ClientAddress,
    CsrfGuard,
    SecurityMiddleware,
    SlidingWindowLimiter,
)

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
MAX_TOKEN_LENGTH: Final = 300
MAX_FORM_FIELDS: Final = 60
CONTENT_REFRESH_SECONDS: Final = 30.0
PREFERENCE_ACTIONS: Final = frozenset(
    {"pause", "resume", "answers", "discreet", "unsubscribe", "export", "erase"}
)


# -- crisis resources ---------------------------------------------------------------------------


# Shown when no locale file can be read: a safety page must never fail to say something useful.
FALLBACK_CRISIS: Final = CrisisInfo(
    heading="If you are in danger right now",
    text="Please call your local emergency number. A local helpline for domestic abuse or for "
         "emotional crisis can also listen, in confidence, and help you think about next steps.",
    lines=(),
)


def load_crisis(templates_dir: Path, locale: str) -> CrisisInfo:
    """Crisis resources from templates/locales/<locale>.yaml: the exact locale, then its language,
    then "en", then a built-in text. `locale` must be one of LOCALES: it becomes a file name."""
    if locale not in LOCALES:
        locale = "en"
    candidates = [locale, locale.lower(), locale.split("-", 1)[0], "en"]
    for key in dict.fromkeys(candidates):
        path = templates_dir / "locales" / f"{key}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        try:
            # Read as the emails read it, so the page and the footer never disagree.
            return parse_crisis(data.get("crisis") if isinstance(data, dict) else None)
        except LocaleError:
            log.error("locale file has no usable crisis section", extra={"file": str(path)})
    return FALLBACK_CRISIS


# -- events API models -----------------------------------------------------------------------


class EventRequest(BaseModel):
    event: Literal["consult_booked"]


class EventAccepted(BaseModel):
    ended: int
    started: list[str]


# -- pages --------------------------------------------------------------------------------------


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


def _local_day(moment: datetime, time_zone: str) -> str:
    local = moment.astimezone(ZoneInfo(time_zone))
    return f"{local:%A} {local.day} {local:%B %Y}"


def _user_agent(request: Request) -> str | None:
    raw = request.headers.get("user-agent", "")
    cleaned = "".join(ch for ch in raw if unicodedata.category(ch) != "Cc").strip()
    return cleaned[:512] or None


# -- enrolling on confirmation ------------------------------------------------------------------


class Enroller:
    """Builds a confirmed subscriber's enrollment from the current content and selection rules,
    picking up edits to sequences/ at most every CONTENT_REFRESH_SECONDS."""

    def __init__(self, content: ContentHolder, sequences_dir: Path) -> None:
        self._content = content
        self._path = sequences_dir / SELECTION_FILE
        self._selection = load_selection(sequences_dir)
        problems = self._selection.check_sequences(content.current.sequences)
        if problems:
            raise ContentInvalid(problems)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    @property
    def selection(self) -> Selection:
        return self._selection

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked_at < CONTENT_REFRESH_SECONDS:
                return
            self._checked_at = time.monotonic()
            self._content.refresh()
            selection, problems = load_selection_file(self._path)
            if selection is None:
                # The last good rules keep working, as with sequence files.
                for problem in problems:
                    log.error("selection rules refused", extra={"problem": str(problem)})
            elif selection != self._selection:
                self._selection = selection

    def plan(self, account: Account, consent: ConsentRecord, now: datetime) -> NewEnrollment:
        self._refresh()
        content = self._content.current
        key = self._selection.choose(account.profile)
        if key not in content.sequences:
            log.error("selected sequence does not exist; using the default",
                      extra={"sequence": key})
            key = self._selection.default
        person = Person(email=account.email, first_name=account.first_name,
                        time_zone=account.time_zone, hesitations=account.hesitations,
                        discreet=account.discreet, locale=account.locale)
        return new_enrollment(person, content, key, consent, now)


# -- the app ------------------------------------------------------------------------------------


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
    accounts = AccountStore(runtime.engine)
    enroller = Enroller(runtime.content, settings.sequences_dir)
    signer = TokenSigner(settings.secret_key)
    csrf = CsrfGuard(settings.secret_key, secure=settings.base_url.startswith("https://"))
    client_ip = ClientAddress(options.trusted_proxies)
    hour = timedelta(hours=1)
    per_ip = SlidingWindowLimiter(options.signup_per_ip_per_hour, hour)
    per_address = SlidingWindowLimiter(options.signup_per_address_per_hour, hour)
    resend_interval = timedelta(seconds=options.resend_interval_seconds)
    web_source = f"web-form {options.form_version}"
    api_source = f"api {options.form_version}"
    confirm_days = max(1, options.confirm_max_age_seconds // 86400)
    pages = Pages(settings.templates_dir / "pages", {
        "site_name": parseaddr(settings.sender)[0] or "Nurture",
        "postal_address": settings.postal_address,
        "lang": "en",
        "confirm_days": confirm_days,
        "resend_minutes": max(1, options.resend_interval_seconds // 60),
    })

    app = FastAPI(
        title="nurture",
        summary="Signup for a gentle email series; every address is confirmed by its owner.",
        docs_url=None,  # the interactive docs need scripts from a CDN, which the CSP forbids
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(ApiCors, origins=options.cors_origins)
    app.add_middleware(SecurityMiddleware)

    # -- helpers ----------------------------------------------------------------------------------

    def message_page(status: int, heading: str, message: str, *, link: str = "",
                     link_text: str = "") -> HTMLResponse:
        return pages.render("token-error.html", status=status, heading=heading, message=message,
                            link=link, link_text=link_text)

    def form_page(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        cookie = csrf.cookie_value(request)
        response = pages.render(name, status=status, csrf_field=CSRF_FIELD,
                                csrf_token=csrf.field_for(cookie), **context)
        csrf.set_cookie(response, cookie)
        return response

    def bad_link() -> HTMLResponse:
        return message_page(400, "This link doesn't work",
                            "It may have been cut short when it was copied. Please open it again "
                            "from the email, or copy the whole link into your browser.")

    def verify(purpose: str, token: str, max_age: int | None = None) -> UUID | HTMLResponse:
        if len(token) > MAX_TOKEN_LENGTH:
            return bad_link()
        try:
            return signer.verify(purpose, token, max_age_seconds=max_age)
        except TokenExpired:
            return message_page(410, "This link has expired",
                                f"Confirmation links work for {confirm_days} days. Please sign up "
                                "again and we'll send you a fresh one.", link="/",
                                link_text="Sign up again")
        except TokenInvalid:
            return bad_link()

    def forbidden() -> HTMLResponse:
        return message_page(403, "Please try again",
                            "This form was open for a long time, or your browser didn't send back "
                            "a cookie this site needs to keep the form safe. Please go back, "
                            "reload the page and send it again.")

    def csrf_passed(request: Request, form: FormData | None) -> bool:
        """The form carries the field that matches this browser's CSRF cookie."""
        field = form.get(CSRF_FIELD) if form is not None else None
        return csrf.valid(request, field if isinstance(field, str) else None)

    def gone() -> HTMLResponse:
        return message_page(404, "There's nothing here any more",
                            "We don't hold any details for this link. If you erased your data, "
                            "that is why: it's gone.", link="/", link_text="Go to the start page")

    def rate_limited(retry_after: float) -> HTMLResponse:
        minutes = max(1, round(retry_after / 60))
        response = pages.render("rate-limited.html", status=429, minutes=minutes)
        response.headers["Retry-After"] = str(int(retry_after) + 1)
        return response

    async def read_form(request: Request) -> FormData | None:
        try:
            return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        except (StarletteHTTPException, MultiPartException, ValueError, KeyError):
            return None

    def consent(kind: str, request: Request, source: str, *,
                text_sha256: str | None = None) -> ConsentRecord:
        return ConsentRecord(kind=kind, source=source, ip=client_ip(request),
                             user_agent=_user_agent(request), consent_text_sha256=text_sha256)

    def signup_context(values: SignupValues, errors: Mapping[str, str], *,
                       fresh: bool) -> dict[str, Any]:
        return {
            "values": values,
            "errors": errors,
            "reasons": REASONS,
            "locales": LOCALES,
            "consent_text": CONSENT_TEXT,
            "safety_question": SAFETY_QUESTION,
            "honeypot_field": HONEYPOT_FIELD,
            "detect_time_zone": fresh,
        }

    def crisis_page(locale: str, *, after_signup: bool) -> HTMLResponse:
        crisis = load_crisis(settings.templates_dir, locale)
        return pages.render("crisis.html", crisis=crisis, after_signup=after_signup, lang=locale)

    def limit(request: Request, email: str | None, now: datetime) -> float | None:
        """Seconds to wait when over a limit; the address counts only once it is valid."""
        retry = per_ip.hit(client_ip(request) or "unknown", now)
        if retry is None and email is not None:
            retry = per_address.hit(address_hash(email), now)
        return retry

    async def take_signup(check: SignupCheck, record: ConsentRecord, now: datetime) -> None:
        person = check.person
        assert person is not None
        await run_in_threadpool(
            accounts.signup_pending,
            PendingSignup(email=person.email, first_name=person.first_name,
                          time_zone=person.time_zone, hesitations=person.hesitations,
                          discreet=person.discreet, locale=person.locale, consent=record),
            now=now, resend_interval=resend_interval,
        )

    # -- signup -----------------------------------------------------------------------------------

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def signup_form(request: Request) -> Response:
        return form_page(request, "signup.html", **signup_context(SignupValues(), {}, fresh=True))

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def signup(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return message_page(400, "Something went wrong with the form",
                                "Please go back, reload the page and try again.")
        values = signup_values(form)
        if values.safety == "yes":
            # Safety first: before any other check, and nothing about the person is kept.
            locale = values.locale if values.locale in LOCALES else "en"
            return crisis_page(locale, after_signup=True)
        if not csrf_passed(request, form):
            return forbidden()
        if values.honeypot:
            return pages.render("check-inbox.html")
        now = clock()
        check = check_signup(values)
        retry = limit(request, check.person.email if check.person else None, now)
        if retry is not None:
            return rate_limited(retry)
        if check.errors:
            return form_page(request, "signup.html", status=422,
                             **signup_context(values, check.errors, fresh=False))
        await take_signup(check, consent("signup", request, web_source,
                                         text_sha256=CONSENT_TEXT_SHA256), now)
        # The same page whatever the address's state: the form must not tell who is subscribed.
        return pages.render("check-inbox.html")

    @app.api_route("/help", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def help_page(request: Request, locale: str = "en") -> Response:
        return crisis_page(locale if locale in LOCALES else "en", after_signup=False)

    # -- confirmation -----------------------------------------------------------------------------

    @app.api_route("/confirm/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def confirm_form(request: Request, token: str) -> Response:
        # Only shows a button: mail scanners that follow links with GET must not confirm anyone.
        checked = verify("confirm", token, options.confirm_max_age_seconds)
        if isinstance(checked, Response):
            return checked
        return form_page(request, "confirm.html", token=token)

    @app.post("/confirm/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def confirm(request: Request, token: str) -> Response:
        checked = verify("confirm", token, options.confirm_max_age_seconds)
        if isinstance(checked, Response):
            return checked
        form = await read_form(request)
        if not csrf_passed(request, form):
            return forbidden()
        now = clock()
        record = consent("confirm", request, web_source)
        try:
            outcome = await run_in_threadpool(
                accounts.confirm, checked, now=now,
                plan=lambda account: enroller.plan(account, record, now))
        except (UnknownSequence, ContentInvalid):
            log.exception("confirmation could not enroll")
            return message_page(503, "We couldn't finish just now",
                                "Your address is not confirmed yet. Please try the link again in "
                                "a little while.")
        if outcome is ConfirmOutcome.NOT_FOUND:
            return gone()
        if outcome is ConfirmOutcome.REFUSED:
            return message_page(409, "This link can't be used any more",
                                "This address has left the list since the link was sent. If you'd "
                                "like the emails again, please sign up again.", link="/",
                                link_text="Sign up again")
        return pages.render("confirmed.html",
                            preferences_url=f"/p/{signer.sign('preferences', checked)}")

    # -- unsubscribe ------------------------------------------------------------------------------

    @app.api_route("/u/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def unsubscribe_form(request: Request, token: str) -> Response:
        checked = verify("unsubscribe", token)
        if isinstance(checked, Response):
            return checked
        return form_page(request, "unsubscribe.html", token=token,
                         preferences_url=f"/p/{signer.sign('preferences', checked)}")

    @app.post("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe(request: Request, token: str) -> Response:
        checked = verify("unsubscribe", token)
        if isinstance(checked, Response):
            return checked
        form = await read_form(request)
        one_click = form is not None and form.get("List-Unsubscribe") == "One-Click"
        if not one_click and not csrf_passed(request, form):
            return forbidden()
        # RFC 8058: the signed token is the authentication; answer 200 with no cookie, no redirect.
        record = consent("unsubscribe", request, "one-click" if one_click else web_source)
        await run_in_threadpool(accounts.unsubscribe, checked, consent=record, now=clock())
        return pages.render("unsubscribed.html", erased=False)

    # -- preferences ------------------------------------------------------------------------------

    def preferences_page(request: Request, account: Account, token: str, *, status: int = 200,
                         notice: str = "", errors: Mapping[str, str] | None = None) -> Response:
        now = clock()
        zone = ZoneInfo(account.time_zone)
        today = now.astimezone(zone).date()
        paused_until = account.paused_until
        return form_page(
            request, "preferences.html", status=status, token=token, account=account,
            masked_email=_mask_email(account.email),
            unsubscribed=account.status is not SubscriberStatus.ACTIVE
            and account.status is not SubscriberStatus.PENDING,
            pending=account.status is SubscriberStatus.PENDING,
            has_enrollment=bool(account.enrollments), is_paused=account.is_paused,
            paused_until=_local_day(paused_until, account.time_zone) if paused_until else "",
            reasons=REASONS, chosen=account.hesitations, notice=notice, errors=errors or {},
            min_date=(today + timedelta(days=1)).isoformat(),
            max_date=(today + timedelta(days=366)).isoformat(),
        )

    @app.api_route("/p/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def preferences_form(request: Request, token: str) -> Response:
        checked = verify("preferences", token)
        if isinstance(checked, Response):
            return checked
        account = await run_in_threadpool(accounts.account, checked)
        if account is None:
            return gone()
        return preferences_page(request, account, token)

    @app.post("/p/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def preferences(request: Request, token: str) -> Response:
        checked = verify("preferences", token)
        if isinstance(checked, Response):
            return checked
        form = await read_form(request)
        if form is None or not csrf_passed(request, form):
            return forbidden()
        account = await run_in_threadpool(accounts.account, checked)
        if account is None:
            return gone()
        action = form.get("action")
        if not isinstance(action, str) or action not in PREFERENCE_ACTIONS:
            return preferences_page(request, account, token, status=422,
                                    notice="Please choose one of the buttons on this page.")
        now = clock()
        notice = ""
        if action == "pause":
            until, error = pause_until(form, now=now, time_zone=account.time_zone)
            if until is None:
                return preferences_page(request, account, token, status=422,
                                        errors={"pause": error})
            count = await run_in_threadpool(
                accounts.pause, checked, until=until,
                consent=consent("pause", request, "preferences"), now=now)
            notice = (f"Paused until {_local_day(until, account.time_zone)}. The emails start "
                      "again by themselves after that." if count
                      else "There is nothing to pause at the moment.")
        elif action == "resume":
            count = await run_in_threadpool(
                accounts.resume, checked, consent=consent("resume", request, "preferences"),
                now=now)
            notice = "Welcome back: your emails are on again." if count else \
                "Your emails were not paused."
        elif action == "answers":
            errors: dict[str, str] = {}
            raw = tuple(v for v in form.getlist("hesitations") if isinstance(v, str))
            chosen = check_answers(raw, errors)
            if errors:
                return preferences_page(request, account, token, status=422, errors=errors)
            await run_in_threadpool(accounts.update_answers, checked, chosen, now=now)
            notice = "Thank you. Your answers are updated."
        elif action == "discreet":
            discreet = form.get("discreet") == "yes"
            await run_in_threadpool(accounts.set_discreet, checked, discreet, now=now)
            notice = ("Discreet mode is on: subjects and the sender name stay neutral."
                      if discreet else "Discreet mode is off.")
        elif action == "unsubscribe":
            await run_in_threadpool(accounts.unsubscribe, checked,
                                    consent=consent("unsubscribe", request, "preferences"),
                                    now=now)
            return pages.render("unsubscribed.html", erased=False)
        elif action == "export":
            data = await run_in_threadpool(accounts.export, checked)
            if data is None:
                return gone()
            return JSONResponse(data, headers={
                "Content-Disposition": 'attachment; filename="my-data.json"'})
        elif action == "erase":
            if form.get("confirm_erase") != "yes":
                return preferences_page(
                    request, account, token, status=422,
                    errors={"erase": "Please tick the box to confirm that you want everything "
                                     "erased."})
            await run_in_threadpool(accounts.erase, checked, now=now)
            return pages.render("unsubscribed.html", erased=True)
        updated = await run_in_threadpool(accounts.account, checked)
        if updated is None:
            return gone()
        return preferences_page(request, updated, token, notice=notice)

    # -- JSON API ---------------------------------------------------------------------------------

    @app.post(
        "/api/v1/subscribers",
        status_code=202,
        response_model=SignupAccepted,
        responses={
            200: {"model": SignupNotTaken, "description": "The person said they are unsafe or "
                  "in crisis: nothing was stored; show these resources."},
            422: {"description": "A field is missing or not acceptable."},
            429: {"description": "Too many signups from this address or network; try later."},
        },
        summary="Sign someone up (double opt-in)",
        description="For a form embedded on another site. The answer is the same whether the "
                    "address is new, pending, already subscribed or blocked; a confirmation email "
                    "goes out only when one is due. Nothing is sent until its link is clicked.",
    )
    async def api_signup(body: SignupRequest, request: Request) -> Response:
        values = body.values()
        if values.safety == "yes":
            crisis = load_crisis(settings.templates_dir, values.locale)
            payload = SignupNotTaken(crisis=CrisisModel(
                heading=crisis.heading, text=crisis.text,
                lines=[CrisisLineModel(name=line.name, contact=line.contact, note=line.note)
                       for line in crisis.lines]))
            return JSONResponse(payload.model_dump(), status_code=200)
        accepted = JSONResponse(SignupAccepted().model_dump(), status_code=202)
        if values.honeypot:
            return accepted
        now = clock()
        check = check_signup(values)
        retry = limit(request, check.person.email if check.person else None, now)
        if retry is not None:
            return JSONResponse({"detail": "Too many signups; please try again later."},
                                status_code=429, headers={"Retry-After": str(int(retry) + 1)})
        if check.errors:
            return JSONResponse({"detail": [
                {"loc": ["body", "unsafe" if name == "safety" else name], "msg": message,
                 "type": "value_error"}
                for name, message in check.errors.items()
            ]}, status_code=422)
        await take_signup(check, consent("signup", request, api_source,
                                         text_sha256=CONSENT_TEXT_SHA256), now)
        return accepted

    # -- events: a booked consult ends the sequence as a conversion ---------------------------

    @app.api_route("/booked/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def booked_form(request: Request, token: str) -> Response:
        # A button, not an action: link scanners must not end anyone's emails.
        checked = verify("booked", token)
        if isinstance(checked, Response):
            return checked
        return form_page(request, "booked.html", token=token)

    @app.post("/booked/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def booked(request: Request, token: str) -> Response:
        checked = verify("booked", token)
        if isinstance(checked, Response):
            return checked
        form = await read_form(request)
        if not csrf_passed(request, form):
            return forbidden()
        outcome = await run_in_threadpool(record_event, runtime.engine, runtime.content.current,
                                          checked, CONSULT_BOOKED, source="email link", now=clock())
        if not outcome.found:
            return gone()
        return pages.render("booked-thanks.html",
                            preferences_url=f"/p/{signer.sign('preferences', checked)}")

    @app.post(
        "/api/v1/subscribers/{subscriber_id}/events",
        status_code=202,
        response_model=EventAccepted,
        responses={401: {"description": "Missing or wrong X-API-Key."},
                   404: {"description": "No active subscriber with this id."},
                   422: {"description": "Unknown event."}},
        summary="Report an event for a subscriber (consult_booked)",
        description="For a booking system: `consult_booked` ends the sequences that exit on it "
                    "and starts their follow-up. Repeating an event changes nothing more.",
    )
    async def subscriber_event(subscriber_id: UUID, body: EventRequest,
                               x_api_key: str | None = Header(default=None)) -> Response:
        if not settings.api_key or not x_api_key or not hmac.compare_digest(
                x_api_key.encode(), settings.api_key.encode()):
            return JSONResponse({"detail": "missing or wrong X-API-Key"}, status_code=401)
        outcome = await run_in_threadpool(record_event, runtime.engine, runtime.content.current,
                                          subscriber_id, body.event, source="api", now=clock())
        if not outcome.found:
            return JSONResponse({"detail": "no active subscriber with this id"}, status_code=404)
        return JSONResponse(EventAccepted(ended=outcome.ended,
                                          started=list(outcome.started)).model_dump(),
                            status_code=202)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        def ping() -> None:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception:
            log.exception("health check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or error.status_code not in (404, 405):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                                headers=error.headers)
        if error.status_code == 405:
            return message_page(405, "This page can't do that",
                                "Please use the buttons on the page.", link="/",
                                link_text="Go to the start page")
        return message_page(404, "Page not found", "There is no page at this address.",
                            link="/", link_text="Go to the start page")

    app.include_router(ops_router(runtime, clock=clock))
    app.include_router(admin_router(settings, runtime, clock=clock,
                                    options=AdminOptions.from_settings(settings), client_ip=client_ip))
    return app
