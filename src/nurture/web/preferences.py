"""The preferences page behind every email's link: pause and resume, answers (behind a button in
discreet mode), discreet mode, locale, unsubscribe, a download of one's data, and erasure. Each
button is one action below. The emails' one-click link to discreet mode has a page of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from nurture.engine.ports import SubscriberStatus
from nurture.store.accounts.types import Account
from nurture.web.context import WebContext
from nurture.web.dependencies import Caller, CheckedForm, Client, PreferencesToken, Web
from nurture.web.forms import check_answers, message, pause_until, reason_labels
from nurture.web.locale import _, choose_locale, lang_cookie, speech, use_locale, valid_locale
from nurture.web.replies import form_page, gone

router = APIRouter(include_in_schema=False)


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


def _local_day(moment: datetime, time_zone: str) -> str:
    """The day in the subscriber's time zone, as the page's language writes a date."""
    return speech().date(moment.astimezone(ZoneInfo(time_zone)).date())


def preferences_page(web: WebContext, request: Request, account: Account, token: str, *,
                     status: int = 200, notice: str = "",
                     errors: Mapping[str, str] | None = None) -> Response:
    use_locale(account.locale)
    today = web.clock().astimezone(ZoneInfo(account.time_zone)).date()
    paused_until = account.paused_until
    return form_page(
        web, request, "preferences.html", status=status, token=token, account=account,
        masked_email=_mask_email(account.email),
        unsubscribed=account.status is not SubscriberStatus.ACTIVE
        and account.status is not SubscriberStatus.PENDING,
        pending=account.status is SubscriberStatus.PENDING,
        has_enrollment=bool(account.enrollments), is_paused=account.is_paused,
        paused_until=_local_day(paused_until, account.time_zone) if paused_until else "",
        reasons=reason_labels(), chosen=account.hesitations, notice=notice, errors=errors or {},
        locales=web.languages.names(),
        # Discreet mode: the page names the neutral sender too, in case someone sees the screen.
        **({"site_name": web.settings.discreet_sender_name} if account.discreet else {}),
        min_date=(today + timedelta(days=1)).isoformat(),
        max_date=(today + timedelta(days=366)).isoformat(),
    )


@dataclass(frozen=True)
class Change:
    """One press of a button on the preferences page, by the subscriber the link names."""

    web: WebContext
    request: Request
    token: str
    subscriber: UUID
    account: Account
    form: FormData
    caller: Client
    now: datetime

    def refused(self, errors: Mapping[str, str]) -> Response:
        """The page again, with what to fix next to the button."""
        return preferences_page(self.web, self.request, self.account, self.token, status=422,
                                errors=errors)


# An action answers with a whole page, or with the notice to show on the updated preferences page.
Action = Callable[[Change], Awaitable[Response | str]]


async def pause(change: Change) -> Response | str:
    time_zone = change.account.time_zone
    until, error = pause_until(change.form, now=change.now, time_zone=time_zone)
    if until is None:
        return change.refused({"pause": error})
    count = await run_in_threadpool(
        change.web.accounts.pause, change.subscriber, until=until,
        consent=change.caller.consent("pause", "preferences"), now=change.now)
    if not count:
        return _("There is nothing to pause at the moment.")
    return (_("Paused until %(date)s. The emails start again by themselves after that.")
            % {"date": _local_day(until, time_zone)})


async def resume(change: Change) -> Response | str:
    count = await run_in_threadpool(
        change.web.accounts.resume, change.subscriber,
        consent=change.caller.consent("resume", "preferences"), now=change.now)
    return (_("Welcome back: your emails are on again.") if count
            else _("Your emails were not paused."))


async def answers(change: Change) -> Response | str:
    errors: dict[str, str] = {}
    raw = tuple(value for value in change.form.getlist("hesitations") if isinstance(value, str))
    chosen = check_answers(raw, errors)
    if errors:
        return change.refused(errors)
    await run_in_threadpool(change.web.accounts.update_answers, change.subscriber, chosen,
                            now=change.now)
    return _("Thank you. Your answers are updated.")


async def discreet(change: Change) -> Response | str:
    on = change.form.get("discreet") == "yes"
    await run_in_threadpool(change.web.accounts.set_discreet, change.subscriber, on, now=change.now)
    return (_("Discreet mode is on: subjects and the sender name stay neutral.") if on
            else _("Discreet mode is off."))


async def change_locale(change: Change) -> Response | str:
    chosen = valid_locale(change.form.get("locale"))
    if chosen is None:
        return change.refused({"locale": message("locale")})
    await run_in_threadpool(change.web.accounts.set_locale, change.subscriber, chosen,
                            now=change.now)
    # The page answers in the new language at once, and this browser keeps it (lang_cookie below).
    choose_locale(chosen)
    return (_("Saved: %(language)s. Your next emails are in this language and show its helplines "
              "and links.") % {"language": change.web.languages.names()[chosen]})


async def unsubscribe(change: Change) -> Response | str:
    await run_in_threadpool(change.web.accounts.unsubscribe, change.subscriber,
                            consent=change.caller.consent("unsubscribe", "preferences"),
                            now=change.now)
    return change.web.pages.render("unsubscribed.html", erased=False)


async def export(change: Change) -> Response | str:
    data = await run_in_threadpool(change.web.accounts.export, change.subscriber)
    if data is None:
        return gone(change.web)
    return JSONResponse(data, headers={"Content-Disposition": 'attachment; filename="my-data.json"'})


async def erase(change: Change) -> Response | str:
    if change.form.get("confirm_erase") != "yes":
        return change.refused(
            {"erase": _("Please tick the box to confirm that you want everything erased.")})
    await run_in_threadpool(change.web.accounts.erase, change.subscriber, now=change.now)
    return change.web.pages.render("unsubscribed.html", erased=True)


ACTIONS: Final[Mapping[str, Action]] = {
    "pause": pause, "resume": resume, "answers": answers, "discreet": discreet, "locale": change_locale,
    "unsubscribe": unsubscribe, "export": export, "erase": erase,
}


@router.api_route("/p/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def preferences_form(request: Request, token: str, subscriber: PreferencesToken,
                           web: Web) -> Response:
    account = await run_in_threadpool(web.accounts.account, subscriber)
    if account is None:
        return gone(web)
    return preferences_page(web, request, account, token)


@router.post("/p/{token}", response_class=HTMLResponse)
async def preferences(request: Request, token: str, subscriber: PreferencesToken,
                      form: CheckedForm, web: Web, caller: Caller) -> Response:
    account = await run_in_threadpool(web.accounts.account, subscriber)
    if account is None:
        return gone(web)
    use_locale(account.locale)  # before the action: its notice speaks the page's language
    name = form.get("action")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        return preferences_page(web, request, account, token, status=422,
                                notice=_("Please choose one of the buttons on this page."))
    answer = await action(Change(web=web, request=request, token=token, subscriber=subscriber,
                                 account=account, form=form, caller=caller, now=web.clock()))
    if isinstance(answer, Response):
        return answer
    updated = await run_in_threadpool(web.accounts.account, subscriber)
    if updated is None:
        return gone(web)
    page = preferences_page(web, request, updated, token, notice=answer)
    if name == "locale" and valid_locale(updated.locale) is not None:
        page.headers.append("set-cookie", lang_cookie(updated.locale).decode("latin-1"))
    return page


# -- the emails' one-click link to discreet mode ------------------------------------------------


@router.api_route("/p/{token}/discreet", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def discreet_form(request: Request, token: str, subscriber: PreferencesToken,
                        web: Web) -> Response:
    # One button, no change: mail scanners follow every link with GET.
    account = await run_in_threadpool(web.accounts.account, subscriber)
    if account is None:
        return gone(web)
    use_locale(account.locale)
    return form_page(web, request, "discreet.html", token=token, already=account.discreet)


@router.post("/p/{token}/discreet", response_class=HTMLResponse)
async def discreet_on(token: str, subscriber: PreferencesToken, form: CheckedForm,
                      web: Web) -> Response:
    account = await run_in_threadpool(web.accounts.account, subscriber)
    if account is None:
        return gone(web)
    use_locale(account.locale)
    await run_in_threadpool(web.accounts.set_discreet, subscriber, True, now=web.clock())
    return web.pages.render("discreet-on.html", preferences_url=f"/p/{token}",
                            site_name=web.settings.discreet_sender_name)
