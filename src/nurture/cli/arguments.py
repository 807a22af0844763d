"""What every command group shares: the error type, exit codes, argument types and output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nurture.clock import parse_instant, utcnow
from nurture.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[Settings, argparse.Namespace], int]
# argparse's type for the object returned by add_subparsers; private, hence Any.
Commands = Any


class CommandError(Exception):
    """A problem the person at the terminal can fix; printed as one line, exit code 1."""


def instant_argument(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO 8601 time; write e.g. 2026-03-06T20:00:00Z") from None


def now_of(args: argparse.Namespace) -> datetime:
    """The --now of the command when given, else the wall clock."""
    value: datetime | None = getattr(args, "now", None)
    return value if value is not None else utcnow()


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
