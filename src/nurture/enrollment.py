"""Enrolling people by hand or from a CSV file: validation of each person, then one bulk write."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from nurture.content import Content, UnknownSequence
from nurture.model import Profile
from nurture.planner import plan_next
from nurture.ports import ConsentRecord, EnrollmentStore, EnrollResult, NewEnrollment
from nurture.reasons import KNOWN_REASONS

MAX_NAME_LENGTH = 80
MAX_EMAIL_LENGTH = 254
CSV_COLUMNS = ("email", "first_name", "time_zone", "hesitations")


class PersonInvalid(ValueError):
    """One field of a person is not acceptable; `field` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Person:
    email: str
    first_name: str | None
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool = False
    locale: str = "en"


def normalize_email(raw: str) -> str:
    text = raw.strip()
    if len(text) > MAX_EMAIL_LENGTH:
        raise PersonInvalid("email", f"is longer than {MAX_EMAIL_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise PersonInvalid("email", "contains control characters")
    try:
        normalized = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise PersonInvalid("email", str(error)) from None
    # Local parts are case-sensitive in theory but never in practice; one person, one row.
    return normalized.lower()


def clean_first_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        return None
    if len(text) > MAX_NAME_LENGTH:
        raise PersonInvalid("first_name", f"is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise PersonInvalid("first_name", "contains line breaks or control characters")
    return text


_ZONES: frozenset[str] | None = None
# Old names that browsers still report; stored under their current name so people see it.
_RENAMED_ZONES = {
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Asia/Rangoon": "Asia/Yangon",
    "Europe/Kiev": "Europe/Kyiv",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "Pacific/Truk": "Pacific/Chuuk",
    "Atlantic/Faeroe": "Atlantic/Faroe",
}


def check_time_zone(name: str) -> str:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    value = name.strip() or "UTC"
    value = _RENAMED_ZONES.get(value, value)
    if value not in _ZONES:
        raise PersonInvalid("time_zone", f"'{value[:60]}' is not an IANA time zone such as "
                            "Europe/London or Asia/Kolkata")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PersonInvalid("time_zone", f"'{value[:60]}' cannot be loaded") from None
    return value


def check_hesitations(values: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(v.strip() for v in values if v.strip())
    unknown = chosen - KNOWN_REASONS
    if unknown:
        raise PersonInvalid("hesitations", f"unknown reason {', '.join(sorted(unknown))[:80]}; "
                            f"use {', '.join(sorted(KNOWN_REASONS))}")
    return chosen


def make_person(email: str, first_name: str | None = None, time_zone: str = "UTC",
                hesitations: Iterable[str] = (), discreet: bool = False,
                locale: str = "en") -> Person:
    return Person(email=normalize_email(email), first_name=clean_first_name(first_name),
                  time_zone=check_time_zone(time_zone), hesitations=check_hesitations(hesitations),
                  discreet=discreet, locale=locale)


def new_enrollment(person: Person, content: Content, sequence_key: str, consent: ConsentRecord,
                   now: datetime) -> NewEnrollment:
    if sequence_key == "system":
        raise UnknownSequence("the 'system' sequence holds system emails; nobody can be enrolled in it")
    sequence = content.sequence(sequence_key)
    profile = Profile(time_zone=person.time_zone, hesitations=person.hesitations,
                      discreet=person.discreet, locale=person.locale)
    plan = plan_next(sequence, profile, done_step_keys=frozenset(), anchor=now)
    return NewEnrollment(email=person.email, first_name=person.first_name,
                         time_zone=person.time_zone, hesitations=person.hesitations,
                         discreet=person.discreet, locale=person.locale,
                         sequence_key=sequence.key, content_version=content.version,
                         first_delivery=plan.as_next_delivery(), consent=consent)


def enroll(store: EnrollmentStore, content: Content, people: list[Person], sequence_key: str,
           consent: ConsentRecord, now: datetime) -> list[EnrollResult]:
    items = [new_enrollment(p, content, sequence_key, consent, now) for p in people]
    return store.enroll(items, now=now)


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


def read_people_csv(path: Path) -> tuple[list[Person], list[RowError]]:
    """Valid people and one error per rejected row; line numbers count the header as line 1."""
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("email",) if c not in (reader.fieldnames or [])]
    if missing:
        return [], [RowError(1, f"the header has no '{missing[0]}' column; expected columns: "
                                f"{', '.join(CSV_COLUMNS)}")]
    people: list[Person] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        try:
            person = make_person(
                email=row.get("email") or "",
                first_name=row.get("first_name"),
                time_zone=row.get("time_zone") or "UTC",
                hesitations=(row.get("hesitations") or "").split(";"),
            )
        except PersonInvalid as error:
            errors.append(RowError(line, str(error)))
            continue
        if person.email in seen:
            errors.append(RowError(line, "email: appears earlier in the file"))
            continue
        seen.add(person.email)
        people.append(person)
    return people, errors
