"""The made-up subscriber a sequence page is shown for, and when they start, read from GET
parameters so that every preview has a link."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from nurture.content.library import Content
from nurture.content.personas import Persona
from nurture.domain.model import Profile
from nurture.domain.people import PersonInvalid, check_hesitations, check_time_zone, clean_first_name
from nurture.domain.reasons import KNOWN_REASONS
from nurture.web.admin.context import first
from nurture.web.forms import LOCALES

VIEWS: Final = {"desktop": "Desktop width", "phone": "Phone width", "both": "Both widths"}
DEFAULT_NAME: Final = "Sam"
_START_FORMAT: Final = "%Y-%m-%dT%H:%M"


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


def content_locales(content: Content) -> dict[str, str]:
    """The locales a preview may use, by key, with their names: every locale file, and every
    locale that has email texts of its own."""
    library = content.library
    found = {key: language.name for key, language in library.locales.languages().items()}
    found.update({key: key for key in library.translations.locales if key not in found})
    return dict(sorted(found.items()))


def parse_choice(fields: Mapping[str, list[str]], now: datetime,
                 locales: Collection[str] = LOCALES) -> tuple[PersonaChoice, dict[str, str]]:
    """The choice, with anything unusable replaced by its default and explained in the errors;
    `locales` are those a preview may use (see content_locales)."""
    errors: dict[str, str] = {}
    # In the form's order, so the errors are too.
    reasons = _reasons(fields, errors)
    locale = _locale(fields, errors, locales)
    name = _name(fields, errors)
    zone = _zone(fields, errors)
    start = _start(fields, errors, now, zone)
    view = first(fields, "view") or "desktop"
    choice = PersonaChoice(reasons=reasons, discreet=first(fields, "discreet") == "yes",
                           locale=locale, name=name, zone=zone, start=start,
                           view=view if view in VIEWS else "desktop")
    return choice, errors


def _reasons(fields: Mapping[str, list[str]], errors: dict[str, str]) -> frozenset[str]:
    raw = fields.get("reasons", [])
    try:
        return check_hesitations(raw)
    except PersonInvalid:
        errors["reasons"] = "Some reasons are not known; only the ones in the list are used."
        return frozenset(r.strip() for r in raw) & KNOWN_REASONS


def _locale(fields: Mapping[str, list[str]], errors: dict[str, str],
            locales: Collection[str]) -> str:
    locale = first(fields, "locale") or "en"
    if locale not in locales:
        errors["locale"] = "Choose a language from the list."
        return "en"
    return locale


def _name(fields: Mapping[str, list[str]], errors: dict[str, str]) -> str:
    if "name" not in fields:
        return DEFAULT_NAME
    try:
        return clean_first_name(first(fields, "name")) or ""
    except PersonInvalid as error:
        errors["name"] = f"The first name {str(error).removeprefix('first_name: ')}."
        return DEFAULT_NAME


def _zone(fields: Mapping[str, list[str]], errors: dict[str, str]) -> str:
    try:
        return check_time_zone(first(fields, "zone") or "UTC")
    except PersonInvalid:
        errors["zone"] = "Write an IANA time zone such as Europe/London or Asia/Kolkata."
        return "UTC"


def _start(fields: Mapping[str, list[str]], errors: dict[str, str], now: datetime, zone: str) -> str:
    """The start as local wall time in `zone`; now when none (or a bad one) was given."""
    raw = first(fields, "start")
    if raw:
        try:
            parsed = datetime.fromisoformat(raw)
            if parsed.tzinfo is not None:
                raise ValueError("no zone")
            return f"{parsed:{_START_FORMAT}}"
        except ValueError:
            errors["start"] = "Write the start as a date and time, e.g. 2026-03-06T20:00."
    return f"{now.astimezone(ZoneInfo(zone)):{_START_FORMAT}}"

