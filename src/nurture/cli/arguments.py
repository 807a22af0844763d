"""Argument types shared by the command groups."""

from __future__ import annotations

import argparse
from datetime import datetime

from nurture.clock import parse_instant


def instant_argument(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO 8601 time; write e.g. 2026-03-06T20:00:00Z") from None
