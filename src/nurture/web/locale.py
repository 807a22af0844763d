"""Which locale a page speaks: one the visitor chose (?lang= on any page, then kept in a cookie), else
the subscriber's own when a link names them, else a guess from the browser (Accept-Language with its
q-values; the time zone a signup form sends points to a region). The choice is kept for the request
so that every page (the crisis help too) speaks, and shows the footer of, the locale it was for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nurture.web.languages import DEFAULT_SPEECH, Languages, Speech

DEFAULT_LOCALE: Final = "en"
# Time zones and the country they lie in; the browser may still report the older name.
TIME_ZONE_REGIONS: Final[dict[str, str]] = {"Asia/Kolkata": "in", "Asia/Calcutta": "in"}
MAX_ACCEPT_LANGUAGE: Final = 512
LANG_PARAMETER: Final = "lang"
LANG_COOKIE: Final = "lang"
LANG_COOKIE_MAX_AGE: Final = 365 * 86400
_RANGE: Final = re.compile(r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*\Z")


@dataclass(frozen=True)
class _PageLocale:
    languages: Languages | None
    speech: Speech
    chosen: bool = False
    """The visitor picked this language (?lang= or its cookie): it beats a subscriber's own."""
    path: str = "/"
    """The request's path: the language switch links to it (GET shows the page again)."""


# Outside a request (or an app): English, and "en" the only locale.
_OUTSIDE: Final = _PageLocale(None, DEFAULT_SPEECH)
_current: ContextVar[_PageLocale] = ContextVar("nurture_page_locale", default=_OUTSIDE)


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


def _region(key: str) -> str:
    parts = key.lower().split("-")
    return next((part for part in parts[1:] if len(part) == 2), "")


def match_tag(tag: str, keys: list[str]) -> str | None:
    """The locale for one language range: the same tag, then one for its region (numbers belong to
    a country; the first such locale in sorted order), then one for its language."""
    wanted = tag.lower()
    by_lower = {key.lower(): key for key in keys}
    if wanted in by_lower:
        return by_lower[wanted]
    region = _region(wanted)
    language = wanted.split("-")[0]
    for key in keys:
        if region and _region(key) == region:
            return key
    return by_lower.get(language) or next(
        (key for key in keys if key.lower().split("-")[0] == language), None)


def from_accept_language(header: str | None, keys: list[str]) -> str | None:
    """The best locale this header asks for, or None when it names none of ours."""
    for tag in language_ranges(header or ""):
        found = match_tag(tag, keys) if tag != "*" else None
        if found is not None:
            return found
    return None


def from_time_zone(time_zone: str | None, keys: list[str],
                   languages: Sequence[str] = ()) -> str | None:
    """The locale of the region a time zone lies in, when that region has one: in the first of
    `languages` (the browser's, best first) that it is written in, else in English, else any."""
    region = TIME_ZONE_REGIONS.get((time_zone or "").strip())
    if region is None:
        return None
    local = [key for key in keys if _region(key) == region]
    for language in [*languages, DEFAULT_LOCALE]:
        wanted = language.lower().split("-")[0]
        found = next((key for key in local if key.lower().split("-")[0] == wanted), None)
        if found is not None:
            return found
    return local[0] if local else None


def zones_of(keys: list[str]) -> dict[str, str]:
    """Locale -> the time zones of its region, space-separated (for /static/timezone.js)."""
    return {key: " ".join(sorted(zone for zone, region in TIME_ZONE_REGIONS.items()
                                 if region == _region(key))) for key in keys}


def crisis_locale(chosen: str, time_zone: str | None, keys: list[str] | None = None) -> str:
    """The locale whose helplines a person in crisis is shown. A region beats a bare language:
    someone who left "English" chosen but is in India still needs India's numbers."""
    keys = locale_keys() if keys is None else keys
    chosen = chosen if chosen in keys else DEFAULT_LOCALE
    if not _region(chosen):
        return from_time_zone(time_zone, keys, [chosen]) or chosen
    return chosen


def locale_keys() -> list[str]:
    """The locales people can choose, from the locale files."""
    languages = _current.get().languages
    return languages.locales() if languages is not None else [DEFAULT_LOCALE]


def valid_locale(value: object) -> str | None:
    """`value` when it is one of the locales people can choose, else None."""
    languages = _current.get().languages
    if languages is None:
        return DEFAULT_LOCALE if value == DEFAULT_LOCALE else None
    return languages.valid(value)


def request_locale() -> str:
    """The locale of the page being rendered for this request."""
    return _current.get().speech.locale


def request_path() -> str:
    return _current.get().path


def speech() -> Speech:
    """How the page being rendered for this request speaks."""
    return _current.get().speech


def _(message: str) -> str:
    """`message` in the request's language (English text is the msgid)."""
    return _current.get().speech.gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return _current.get().speech.ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks a text for the catalog, to be translated later with _() when it is shown."""
    return message


def _switch(locale: str | None, *, chosen: bool) -> None:
    state = _current.get()
    found = valid_locale(locale)
    if found is not None and state.languages is not None:
        _current.set(replace(state, speech=state.languages.speech(found), chosen=chosen))


def use_locale(locale: str | None) -> None:
    """Speak for the subscriber's own locale for the rest of the request, unless the visitor chose
    a language on this browser (the switch on every page)."""
    if not _current.get().chosen:
        _switch(locale, chosen=False)


def choose_locale(locale: str | None) -> None:
    """Speak the locale the visitor just chose (on the preferences page) for the rest of the request."""
    _switch(locale, chosen=True)


def lang_cookie(locale: str) -> bytes:
    """The Set-Cookie value that keeps a visitor's choice of language for later pages."""
    return (f"{LANG_COOKIE}={locale}; Path=/; Max-Age={LANG_COOKIE_MAX_AGE}; "
            "SameSite=Lax").encode("latin-1")


def _header(scope: Scope, wanted: bytes) -> str | None:
    return next((value.decode("latin-1") for name, value in scope.get("headers", ())
                 if name == wanted), None)


def _cookie(scope: Scope) -> str | None:
    for piece in (_header(scope, b"cookie") or "").split(";"):
        name, _sep, value = piece.strip().partition("=")
        if name == LANG_COOKIE:
            return value
    return None


def _own_path(scope: Scope) -> str:
    """The request's path when it is a path on this site ("//host/..." would leave it)."""
    path = str(scope.get("path") or "/")
    safe = path.startswith("/") and not path.startswith("//") and "\\" not in path
    return path if safe else "/"


class LocaleMiddleware:
    """Sets the request's locale before any route runs: ?lang= (remembered in a cookie), then that
    cookie, then Accept-Language. The JSON API always speaks English."""

    def __init__(self, app: ASGIApp, *, languages: Languages) -> None:
        self.app = app
        self.languages = languages

    def _locale(self, scope: Scope) -> tuple[str, bool, str | None]:
        """The locale, whether the visitor chose it, and a locale to remember in the cookie."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        asked = self.languages.valid((query.get(LANG_PARAMETER) or [None])[0])
        if asked is not None:
            return asked, True, asked
        kept = self.languages.valid(_cookie(scope))
        if kept is not None:
            return kept, True, None
        if str(scope.get("path", "")).startswith("/api/"):
            return DEFAULT_LOCALE, False, None
        found = from_accept_language(_header(scope, b"accept-language"), self.languages.locales())
        return found or DEFAULT_LOCALE, False, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locale, chosen, remember = self._locale(scope)
        token = _current.set(_PageLocale(self.languages, self.languages.speech(locale), chosen,
                                         _own_path(scope)))

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and remember is not None:
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", lang_cookie(remember))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            _current.reset(token)
