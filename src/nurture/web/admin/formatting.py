"""How the admin pages write things: masked addresses, SMTP replies without addresses, delays in the
sequence files' notation, UTC times and send windows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from nurture.domain.model import WEEKDAY_NAMES, Sequence

MAX_ERROR_TEXT: Final = 200
_ADDRESS: Final = re.compile(r"[^\s<>@\"',;:()\[\]]+@[^\s<>@\"',;:()\[\]]+")


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
