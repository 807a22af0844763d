"""On a terminal the logs are lines for a person; piped or when told, JSON lines for machines; the
libraries' chatter stays out at INFO."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import nurture
from tests.support.terminal import Terminal, on_terminal, plain


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return dict(cli_env, NURTURE_LOG_LEVEL="INFO")


def test_console_lines_on_a_terminal(env: dict[str, str]) -> None:
    run = on_terminal("db", "upgrade", env=env)
    code, output = run.returncode, run.terminal
    assert code == 0, output
    line = next(line for line in plain(output).splitlines() if "upgraded" in line)
    time, level, event = line.split(maxsplit=2)
    assert time.count(":") == 2 and level == "INFO"
    assert event.startswith("database sqlite:///") and event.endswith("upgraded to head")
    assert "{" not in output
    assert "\x1b[36mINFO" in output, "the level is coloured where the terminal has colour"


@pytest.mark.parametrize("plain_terminal", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_colour_when_the_terminal_has_none(env: dict[str, str],
                                              plain_terminal: dict[str, str]) -> None:
    run = on_terminal("db", "upgrade", env=env, overrides=plain_terminal)
    code, output = run.returncode, run.terminal
    assert code == 0 and " INFO " in output and "\x1b[" not in output


def test_json_lines_when_piped(env: dict[str, str]) -> None:
    result = nurture("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(entry["event"].endswith("upgraded to head") and entry["level"] == "info"
               for entry in entries)


def test_json_on_a_terminal_when_told(env: dict[str, str]) -> None:
    run = on_terminal("db", "upgrade", env=dict(env, NURTURE_LOG_FORMAT="json"))
    code, output = run.returncode, run.terminal
    assert code == 0, output
    # stdout shares the terminal: its one line of result is not a log line.
    lines = [line for line in plain(output).splitlines() if line.strip()
             and line != "database is at the latest revision"]
    entries = [json.loads(line) for line in lines]
    assert entries and all(entry["level"] == "info" for entry in entries)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_scheduler_library_chatter_only_at_debug(env: dict[str, str], level: str) -> None:
    assert nurture("db", "upgrade", env=env).returncode == 0
    terminal = Terminal("scheduler", env=dict(env, NURTURE_LOG_LEVEL=level))
    try:
        terminal.expect(r"scheduler started")
        assert terminal.interrupt() == 0
    finally:
        terminal.close()
    output = plain(terminal.output)
    assert "scheduler stopped" in output
    assert ("Adding job tentatively" in output) == (level == "DEBUG"), output
