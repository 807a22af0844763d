"""Logging for people and for machines: console lines on a terminal, JSON lines elsewhere.

Callers pass ids and counts only, never addresses, names or answers; both formats print the same
fields, so what one holds the other holds too.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "console", "json"]
ResolvedFormat = Literal["console", "json"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}

# Library loggers that print message content, CSS noise or start-up chatter ("Adding job
# tentatively", migration contexts, one line per HTTP request) that a person need not read.
# They speak again when NURTURE_LOG_LEVEL=DEBUG.
THIRD_PARTY_LOGGERS = ("cssutils", "mail.log", "aiosmtpd", "alembic", "uvicorn", "uvicorn.access",
                       "uvicorn.error", "asyncio", "multipart")
# APScheduler warns of a tick "skipped: maximum number of running instances reached" whenever a
# dispatch pass outlasts the interval: by design (one pass at a time, the next tick carries on), and
# the metrics show a busy scheduler better than a line per tick.
SCHEDULER_LOGGERS = ("apscheduler",)
# A parser's trace, a line per block rule per line of every template: at DEBUG it buried the
# start-up under thousands of lines (and slowed it past a minute). Never shown.
TRACE_LOGGERS = ("markdown_it",)

# The console shows this many extra fields at most: a person reads a line, not a record.
CONSOLE_FIELDS = 6

_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "36", "WARNING": "33", "ERROR": "31;1", "CRITICAL": "41;97"}
_resolved: ResolvedFormat = "json"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value if isinstance(value, int | float | bool | None) else str(value)
    if record.exc_info and record.exc_info[0] is not None:
        fields["error_type"] = record.exc_info[0].__name__
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors and `jq` read."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_fields(record))
        return json.dumps(entry, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`07:07:12 INFO  tick  claimed=3 sent=3`: local time, level, event, a few key=value fields.

    No traceback either: the error's type is a field, as in JSON, because an exception's text may
    quote what it was handed (an address, an answer)."""

    def __init__(self, *, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = f"{record.levelname:<7}"
        fields = _fields(record)
        shown = list(fields.items())[:CONSOLE_FIELDS]
        extra = " ".join(f"{key}={_console_value(value)}" for key, value in shown)
        if len(fields) > CONSOLE_FIELDS:
            extra += f" (+{len(fields) - CONSOLE_FIELDS} more)"
        if self.colour:
            time = f"\x1b[2m{time}\x1b[0m"
            level = f"\x1b[{_LEVEL_COLOURS.get(record.levelname, '0')}m{level}\x1b[0m"
            extra = f"\x1b[2m{extra}\x1b[0m" if extra else ""
        return " ".join(part for part in (time, level, record.getMessage(), extra) if part)


def _console_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def resolve_format(requested: LogFormat, stream: TextIO) -> ResolvedFormat:
    """`auto` is console when the stream is a terminal, JSON otherwise (pipes, files, containers)."""
    if requested != "auto":
        return requested
    return "console" if _isatty(stream) else "json"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(level: str = "INFO", log_format: LogFormat = "auto", *,
                      colour: bool = False, stream: TextIO | None = None) -> ResolvedFormat:
    """Set the root handler once per process; returns the format chosen, for child processes.

    `colour` is what the terminal allows (config.terminal_allows_colour); it applies only when the
    stream is a terminal."""
    global _resolved
    target = stream if stream is not None else sys.stderr
    _resolved = resolve_format(log_format, target)
    handler = logging.StreamHandler(target)
    formatter: logging.Formatter = (ConsoleFormatter(colour=colour and _isatty(target))
                                    if _resolved == "console" else JsonFormatter())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    debug = logging.getLevelName(level) == logging.DEBUG
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in SCHEDULER_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.ERROR)
    for name in TRACE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    return _resolved


def current_format() -> ResolvedFormat:
    """The format this process logs in, so a child process it starts writes the same."""
    return _resolved
