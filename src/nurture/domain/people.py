"""A person as they sign up or are imported: the fields, and the checks that make each one safe to keep."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from nurture.domain.reasons import KNOWN_REASONS

MAX_NAME_LENGTH = 80
MAX_EMAIL_LENGTH = 254


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
