"""`nurture stats` and `nurture status` on a terminal: aligned tables, the funnel as bars; piped
and --json output unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.support.cli import cli_settings, nurture
from tests.support.smtp import RecordingSmtpServer
from tests.support.terminal import on_terminal

# Colour and cursor codes, for reading the terminal's text as a person sees it.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _screen(text: str) -> list[str]:
    return [line.rstrip() for line in _ESCAPES.sub("", text).replace("\r", "").split("\n")]


def _cells(line: str) -> list[tuple[str, int]]:
    """Each word of a table line with the column it ends at."""
    return [(found.group(), found.end()) for found in re.finditer(r"\S+", line)]


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Three people in `sample`: all got the welcome; two the second step, one skipped it. Built
    once for the module (the tests only read it): dispatching through the CLI takes a while."""
    with RecordingSmtpServer() as smtp_server:
        env = cli_settings(tmp_path_factory.mktemp("tables") / "cli.db", smtp_server.port)
        assert nurture("db", "upgrade", env=env).returncode == 0
        for index, reasons in enumerate(("stigma", "vulnerability", "stigma")):
            assert nurture("enroll", f"p{index}@example.org", "--sequence", "sample",
                           "--time-zone", "Europe/London", "--hesitations", reasons, "--now",
                           "2026-03-02T10:00:00Z", env=env).returncode == 0
        for now in ("2026-03-02T10:00:00Z", "2026-03-04T10:00:00Z"):
            assert nurture("dispatch", "--now", now, env=env).returncode == 0
        yield env


def test_stats_table_with_funnel_bars(sent: dict[str, str]) -> None:
    shown = on_terminal("stats", "sample", env=sent)
    assert shown.returncode == 0, shown.terminal
    assert "\x1b[" in shown.terminal, "colour on a colour terminal"
    screen = _screen(shown.terminal)
    assert "sample: per-step results" in screen[0]
    header = next(line for line in screen if line.split()[:3] == ["step", "queued", "sent"])
    rows = {line.split()[0]: line for line in screen
            if line.split() and line.split()[0] in ("welcome", "understanding", "next-steps")}
    assert set(rows) == {"welcome", "understanding", "next-steps"}
    # Numbers are right-aligned under their headings.
    headings = _cells(header)[1:9]
    assert [name for name, _ in headings] == ["queued", "sent", "failed", "bounced", "skipped",
                                              "unsubscribed", "paused", "converted"]
    for line in rows.values():
        assert [end for _, end in _cells(line)[1:9]] == [end for _, end in headings]
    assert [cell for cell, _ in _cells(rows["welcome"])[1:3]] == ["0", "3"]
    assert [cell for cell, _ in _cells(rows["understanding"])[1:3]] == ["0", "2"]
    # The funnel: sent relative to the first step, as a bar and a percentage.
    assert "█" * 24 in rows["welcome"] and rows["welcome"].endswith("100%")
    assert rows["understanding"].endswith("67%")
    assert "█" * 16 in rows["understanding"] and "█" * 17 not in rows["understanding"]
    assert rows["next-steps"].endswith("0%")


def test_stats_json_and_piped_output_are_unchanged(sent: dict[str, str]) -> None:
    piped = nurture("stats", "sample", "--json", env=sent)
    shown = on_terminal("stats", "sample", "--json", env=sent)
    assert json.loads(_ESCAPES.sub("", shown.terminal)) == json.loads(piped.stdout)
    plain = nurture("stats", "sample", env=sent).stdout.splitlines()
    assert plain[0].split() == ["sequence", "step", "queued", "sent", "failed", "bounced",
                                "skipped", "unsubscribed", "paused", "converted"]
    assert plain[1].split() == ["sample", "welcome", "0", "3", "0", "0", "0", "0", "0", "0"]
    assert "\x1b[" not in "\n".join(plain) and "█" not in "\n".join(plain)


def test_status_tables(sent: dict[str, str]) -> None:
    shown = on_terminal("status", env=sent)
    assert shown.returncode == 0, shown.terminal
    screen = _screen(shown.terminal)
    for title in ("scheduler processes", "queue", "deliveries"):
        assert title in [line.strip() for line in screen]
    statuses = {line.split()[0]: line.split()[1] for line in screen
                if len(line.split()) == 2 and line.split()[0] in ("queued", "sent", "skipped")}
    assert statuses == {"queued": "3", "sent": "5", "skipped": "1"}
    assert "none has run yet" in shown.terminal

    piped = nurture("status", env=sent)
    assert piped.stdout.splitlines()[0] == "scheduler processes:"
    assert "deliveries: queued=3, sent=5, skipped=1" in piped.stdout
    status = json.loads(nurture("status", "--json", env=sent).stdout)
    assert status["deliveries"] == {"queued": 3, "sent": 5, "skipped": 1}
