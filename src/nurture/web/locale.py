"""Which locale a page speaks for: the subscriber's own when a link names them, else a guess from the
browser (Accept-Language with its q-values, and the time zone a signup form sends). The guess is kept
for the request in a context variable, so every page (error pages too) shows the footer of the
locale it was rendered for."""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from nurture.web.forms import LOCALES

DEFAULT_LOCALE: Final = "en"
# Time zones whose region has a locale of its own; the browser may still report the older name.
TIME_ZONE_LOCALES: Final[dict[str, str]] = {"Asia/Kolkata": "en-IN", "Asia/Calcutta": "en-IN"}
MAX_ACCEPT_LANGUAGE: Final = 512
_RANGE: Final = re.compile(r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*\Z")

_request_locale: ContextVar[str] = ContextVar("nurture_request_locale", default=DEFAULT_LOCALE)


def _quality(raw: str | None) -> float:
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return value if 0.0 <= value <= 1.0 else 0.0


def language_ranges(header: str) -> list[str]:
    """The language ranges of an Accept-Language header, best first (RFC 9110: q=0 means "not
    this"; equal weights keep their order); malformed pieces are skipped."""
    weighted = []
    for position, piece in enumerate(header[:MAX_ACCEPT_LANGUAGE].split(",")):
        match = _RANGE.match(piece)
        if match is None:
            continue
        quality = _quality(match.group(2))
        if quality > 0:
            weighted.append((-quality, position, match.group(1)))
    return [tag for _, _, tag in sorted(weighted)]


def _match(tag: str) -> str | None:
    """The locale for one language range: the same tag, then one for its region (numbers belong to
    a country), then one for its language."""
    wanted = tag.lower()
    by_lower = {key.lower(): key for key in LOCALES}
    if wanted in by_lower:
        return by_lower[wanted]
    parts = wanted.split("-")
    regions = [part for part in parts[1:] if len(part) == 2]
    for key in LOCALES:
        key_parts = key.lower().split("-")
        if len(key_parts) > 1 and key_parts[1] in regions:
            return key
    return by_lower.get(parts[0])


def from_accept_language(header: str | None) -> str | None:
    """The best locale this header asks for, or None when it names none of ours."""
    for tag in language_ranges(header or ""):
        found = _match(tag) if tag != "*" else None
        if found is not None:
            return found
    return None


def from_time_zone(time_zone: str | None) -> str | None:
    """The locale of the region a time zone lies in, when that region has one."""
    return TIME_ZONE_LOCALES.get((time_zone or "").strip())


def valid_locale(value: object) -> str | None:
    """`value` when it is one of the locales people can choose, else None."""
    return value if isinstance(value, str) and value in LOCALES else None


def crisis_locale(chosen: str, time_zone: str | None) -> str:
    """The locale whose helplines a person in crisis is shown. A region beats a bare language:
    someone who left "English" chosen but is in India still needs India's numbers."""
    chosen = valid_locale(chosen) or DEFAULT_LOCALE
    if "-" not in chosen:
        return from_time_zone(time_zone) or chosen
    return chosen


def request_locale() -> str:
    """The locale of the page being rendered for this request."""
    return _request_locale.get()


def use_locale(locale: str | None) -> None:
    """Speak for this locale for the rest of the request (a subscriber's own, once known)."""
    found = valid_locale(locale)
    if found is not None:
        _request_locale.set(found)


class LocaleMiddleware:
    """Sets the request's locale from its Accept-Language header before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((value.decode("latin-1") for name, value in scope.get("headers", ())
                       if name == b"accept-language"), None)
        token = _request_locale.set(from_accept_language(header) or DEFAULT_LOCALE)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_locale.reset(token)
