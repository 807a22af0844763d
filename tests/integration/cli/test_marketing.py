"""Marketers' commands as subprocesses: preview, timeline (with DST), send-test and stats."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from tests.support.cli import nurture


def test_preview_writes_html_text_and_eml_per_step(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = nurture("preview", "sample", "--persona", "reasons=stigma name=Asha", "--out", str(out),
                     env=cli_env)
    assert result.returncode == 0, result.stderr
    for step in ("welcome", "understanding", "next-steps"):
        assert (out / f"{step}.html").read_text().startswith("<!DOCTYPE html") or \
            "<html" in (out / f"{step}.html").read_text()
        assert (out / f"{step}.txt").read_text().strip()
        message = message_from_bytes((out / f"{step}.eml").read_bytes(), policy=default)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Asha, you are not alone in this" in result.stdout
    assert "understanding" in (out / "index.html").read_text()


def test_preview_shows_skipped_steps_and_discreet_subjects(cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    result = nurture("preview", "sample", "--persona", "reasons=not_sure", "--discreet", "--out",
                     str(tmp_path / "p"), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "understanding: skipped for this persona" in result.stdout
    assert "welcome: Your notes have started" in result.stdout


def test_timeline_across_the_spring_dst_change(cli_env: dict[str, str]) -> None:
    result = nurture("timeline", "sample", "--persona", "reasons=stigma", "--start",
                     "2026-03-06T20:00", "--time-zone", "America/New_York", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = {row["step"]: row for row in json.loads(result.stdout)}
    # Friday 20:00 is after the 09:00-20:00 window: the welcome waits for Saturday 09:00 EST.
    assert rows["welcome"]["local"] == "Sat 2026-03-07 09:00 EST"
    assert rows["welcome"]["utc"] == "2026-03-07 14:00 UTC"
    assert "moved into the send window" in rows["welcome"]["note"]
    # Two days of elapsed time later the clocks have sprung forward: 10:00 EDT, same UTC hour.
    assert rows["understanding"]["local"] == "Mon 2026-03-09 10:00 EDT"
    assert "DST" in rows["understanding"]["note"]


def test_timeline_lists_skipped_steps_with_their_reason(cli_env: dict[str, str]) -> None:
    result = nurture("timeline", "sample", "--persona", "reasons=vulnerability", "--start",
                     "2026-03-02T10:00", "--time-zone", "Europe/London", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "skipped: condition not met: hesitations_any fear_of_blame,stigma" in result.stdout


def test_bad_persona_is_explained(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = nurture("preview", "sample", "--persona", "reasons=astrology", "--out",
                     str(tmp_path), env=cli_env)
    assert result.returncode == 1
    assert "unknown reason astrology" in result.stderr


def test_send_test_arrives_marked_as_a_test(cli_env: dict[str, str], smtp_server: Any) -> None:
    result = nurture("send-test", "sample", "welcome", "--to", "marketer@example.org",
                     "--persona", "reasons=stigma name=Asha", env=cli_env)
    assert result.returncode == 0, result.stderr
    smtp_server.wait_for(1)
    message = smtp_server.messages[0].message
    assert message["Subject"] == "[TEST] Asha, you are not alone in this"
    assert message["X-Nurture-Test"] == "yes"
    assert smtp_server.messages[0].recipients == ("marketer@example.org",)


def test_stats_per_step(cli_env: dict[str, str], smtp_server: Any) -> None:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    for index, reasons in enumerate(("stigma", "vulnerability", "stigma")):
        enrolled = nurture("enroll", f"p{index}@example.org", "--sequence", "sample",
                           "--time-zone", "Europe/London", "--hesitations", reasons, "--now",
                           "2026-03-02T10:00:00Z", env=cli_env)
        assert enrolled.returncode == 0, enrolled.stderr
    nurture("dispatch", "--now", "2026-03-02T10:00:00Z", env=cli_env)
    nurture("dispatch", "--now", "2026-03-04T10:00:00Z", env=cli_env)
    result = nurture("stats", "sample", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = {row["step"]: row for row in json.loads(result.stdout)}
    assert rows["welcome"]["sent"] == 3
    assert rows["understanding"]["sent"] == 2 and rows["understanding"]["skipped"] == 1
    assert rows["next-steps"]["queued"] == 3
    table = nurture("stats", env=cli_env)
    assert table.stdout.splitlines()[0].split()[:4] == ["sequence", "step", "queued", "sent"]


def test_stats_by_locale_and_for_one_locale(cli_env: dict[str, str], smtp_server: Any) -> None:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    for index, locale in enumerate(("en-IN", "hi-IN", "hi-IN")):
        enrolled = nurture("enroll", f"l{index}@example.org", "--sequence", "sample", "--locale",
                           locale, "--hesitations", "stigma", "--now", "2026-03-02T10:00:00Z",
                           env=cli_env)
        assert enrolled.returncode == 0, enrolled.stderr
    nurture("dispatch", "--now", "2026-03-02T10:00:00Z", env=cli_env)
    result = nurture("stats", "sample", "--by-locale", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = {(row["step"], row["locale"]): row for row in json.loads(result.stdout)}
    assert rows[("welcome", "hi-IN")]["sent"] == 2
    assert rows[("welcome", "en-IN")]["sent"] == 1
    assert ("welcome", "en") not in rows
    only = nurture("stats", "sample", "--locale", "hi-IN", "--json", env=cli_env)
    [welcome] = [row for row in json.loads(only.stdout) if row["step"] == "welcome"]
    assert welcome["sent"] == 2 and "locale" not in welcome
    table = nurture("stats", "--by-locale", env=cli_env).stdout.splitlines()
    assert table[0].split()[:4] == ["sequence", "step", "locale", "queued"]
    assert any(line.split()[:4] == ["sample", "welcome", "hi-IN", "0"] for line in table[1:])
