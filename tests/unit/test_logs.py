"""The two log formats: console lines for people and JSON lines for machines, chosen by the stream."""

from __future__ import annotations

import io
import json
import logging

import pytest

from nurture.logs import (
    CONSOLE_FIELDS,
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    resolve_format,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str = "tick", **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("nurture.scheduler", logging.INFO, __file__, 1, message, None, None)
    for key, value in fields.items():
        setattr(entry, key, value)
    return entry


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", FakeTerminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", FakeTerminal()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"


def test_console_line_has_time_level_event_and_fields() -> None:
    line = ConsoleFormatter(colour=False).format(record(claimed=3, sent=3, relay="127.0.0.1:25"))
    time, level, rest = line.split(maxsplit=2)
    assert len(time) == 8 and time.count(":") == 2
    assert level == "INFO"
    assert rest == "tick claimed=3 sent=3 relay=127.0.0.1:25"


def test_console_quotes_values_with_spaces_and_counts_what_it_leaves_out() -> None:
    many = {f"f{i}": i for i in range(CONSOLE_FIELDS + 2)}
    line = ConsoleFormatter(colour=False).format(record("relay failed", reason="timed out", **many))
    assert 'reason="timed out"' in line
    assert line.endswith("(+3 more)")


def test_console_colour_only_when_asked() -> None:
    assert "\x1b[" not in ConsoleFormatter(colour=False).format(record())
    coloured = ConsoleFormatter(colour=True).format(record(sent=1))
    assert "\x1b[36mINFO" in coloured and coloured.endswith("\x1b[0m")


def test_both_formats_carry_the_same_fields_and_no_traceback_text() -> None:
    try:
        raise ValueError("meera@example.org is not welcome here")
    except ValueError:
        import sys

        failing = record("send failed", delivery="d-1")
        failing.exc_info = sys.exc_info()
    console = ConsoleFormatter(colour=False).format(failing)
    entry = json.loads(JsonFormatter().format(failing))
    assert entry["error_type"] == "ValueError" and "error_type=ValueError" in console
    assert "meera" not in console and "meera" not in json.dumps(entry)


@pytest.mark.parametrize(("level", "library_level", "scheduler_level"), [
    ("INFO", logging.WARNING, logging.ERROR), ("DEBUG", logging.DEBUG, logging.DEBUG)])
def test_third_party_loggers_are_quiet_unless_debug(level: str, library_level: int,
                                                    scheduler_level: int) -> None:
    stream = io.StringIO()
    try:
        assert configure_logging(level, "auto", stream=stream) == "json"
        for name in ("uvicorn.access", "alembic.runtime.migration"):
            assert logging.getLogger(name).getEffectiveLevel() == library_level
        assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == scheduler_level
        logging.getLogger("apscheduler.scheduler").info("Adding job tentatively")
        logging.getLogger("tests.unit.ours").info("ours")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        events = [line["event"] for line in lines]
        assert "ours" in events
        assert ("Adding job tentatively" in events) == (level == "DEBUG")
    finally:
        configure_logging("WARNING", "json")
