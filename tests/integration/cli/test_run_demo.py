"""`nurture run --demo` on a terminal: three addresses and little else, a sample person signed up
and confirmed through the real web app, and a printed time-travel command that brings the next
three emails to the inbox page."""

from __future__ import annotations

import re
import shlex
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import clean_env, nurture
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.terminal import Terminal, plain


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    settings = clean_env({
        "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "NURTURE_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NURTURE_SEQUENCES_DIR": str(ROOT / "sequences"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_WEB_PORT": str(free_port()),
        "NURTURE_MAILCATCHER_SMTP_PORT": str(free_port()),
        "NURTURE_MAILCATCHER_HTTP_PORT": str(free_port()),
        # The scheduler's tick is how often it looks; a short one only makes the test quicker.
        "NURTURE_TICK_SECONDS": "0.2",
    })
    settings.pop("NURTURE_SMTP_URL", None)
    return settings


def inbox_subjects(env: dict[str, str]) -> list[str]:
    port = env["NURTURE_MAILCATCHER_HTTP_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        page = response.read().decode()
    return re.findall(r"<td><a href=\"/m/[^\"]+\">([^<]*)</a>", page)


def test_demo_signs_up_a_person_and_prints_a_time_travel_command(env: dict[str, str]) -> None:
    terminal = Terminal("run", "--demo", env=env)
    try:
        command = terminal.expect(r"(?m)^ +(.*nurture dispatch --next 3)\r?$").group(1)
        shown = [line for line in plain(terminal.output).splitlines() if line.strip()]
        assert [line.split(":")[0] for line in shown[:4]] == ["inbox", "web form", "scheduler",
                                                            "demo"], shown
        assert len(shown) == 6, "three addresses, the demo person and the command; nothing else"
        assert not any(word in terminal.output for word in ("{", "INFO", "Adding job"))
        assert len(inbox_subjects(env)) == 2, "the confirmation and, at once, the welcome"

        words = shlex.split(command)
        settings = dict(word.split("=", 1) for word in words if "=" in word and
                        word.startswith("NURTURE_"))
        travelled = nurture(*words[words.index("dispatch"):], env=dict(env, **settings))
        assert travelled.returncode == 0, travelled.stderr
        passes = travelled.stdout.splitlines()
        assert len(passes) == 3 and all("sent=1" in line for line in passes), passes
        subjects = inbox_subjects(env)
        assert len(subjects) == 5 and len(set(subjects)) == 5, subjects

        assert terminal.interrupt() == 0, terminal.output
    finally:
        terminal.close()
    assert "stopped with exit code" not in terminal.output
