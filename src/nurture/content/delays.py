"""Delays between steps as marketers write them ("2d", "36h", "1w2d"), parsed into timedeltas."""

from __future__ import annotations

import re
from datetime import timedelta

DELAY_FORMS = "0, 90m, 36h, 2d, 1w, 1w2d, 1d12h"
_DELAY_RE = re.compile(
    r"(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?",
)


class DelayError(ValueError):
    """A delay text that is not one of the accepted forms."""


def parse_delay(text: str) -> timedelta:
    """Parse "0", "90m", "36h", "2d", "1w", "1w2d", "1d12h": whole units, largest first, no sign."""
    cleaned = text.strip()
    if cleaned == "0":
        return timedelta(0)
    match = _DELAY_RE.fullmatch(cleaned)
    # The pattern matches the empty string, so require at least one unit to have been given.
    if cleaned == "" or match is None or not any(match.groupdict().values()):
        raise DelayError(
            f"invalid delay {text!r}: use whole numbers of weeks (w), days (d), hours (h) "
            f"and minutes (m), largest unit first, no sign or spaces, e.g. {DELAY_FORMS}"
        )
    parts = {unit: int(value or 0) for unit, value in match.groupdict().items()}
    try:
        return timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"])
    except OverflowError:
        raise DelayError(f"delay {text!r} is too large") from None
