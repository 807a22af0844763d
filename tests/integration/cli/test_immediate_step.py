"""`immediate: true` as marketers meet it: validate's error and warning, each with file:line and the
fix, and `nurture timeline` showing the first email at once after confirming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nurture.content.library import check_content
from nurture.domain.problems import Severity
from tests.support.cli import nurture
from tests.support.paths import ROOT

IMMEDIATE = "    immediate: true\n"


def _copy(tmp_path: Path) -> Path:
    sequences = tmp_path / "sequences"
    shutil.copytree(ROOT / "sequences", sequences)
    return sequences


def _line_of(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[: text.index(needle, start)].count("\n") + 1


def test_immediate_on_a_later_step_is_an_error_naming_the_line_and_the_fix(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    sequences = _copy(tmp_path)
    path = sequences / "partner-hesitant.yaml"
    text = path.read_text()
    marker = "  - key: why-they-hesitate\n    delay: 2d\n"
    broken = text.replace(marker, marker + IMMEDIATE)
    assert broken != text
    path.write_text(broken)
    line = _line_of(broken, IMMEDIATE, after=marker)
    cli_env["NURTURE_SEQUENCES_DIR"] = str(sequences)
    result = nurture("sequences", "validate", env=cli_env)
    assert result.returncode == 1, result.stdout
    assert (f"{path}:{line}: error: `immediate` is set on step 'why-they-hesitate', which is not "
            "the first step") in result.stdout
    assert "Fix: remove `immediate: true` from this step" in result.stdout


def test_a_delay_on_an_immediate_step_is_an_error(tmp_path: Path) -> None:
    sequences = _copy(tmp_path)
    path = sequences / "partner-hesitant.yaml"
    broken = path.read_text().replace("    delay: 0h\n" + "    # Sent at once", "    delay: 1h\n"
                                      "    # Sent at once", 1)
    path.write_text(broken)
    _, _, problems = check_content(sequences, ROOT / "templates", rules=False)
    [problem] = [p for p in problems if p.severity is Severity.ERROR]
    assert problem.path == path and problem.line == _line_of(broken, IMMEDIATE)
    assert "is `immediate` but has a delay" in problem.message and "delay: 0h" in problem.fix


def test_a_confirmations_first_step_that_waits_for_the_window_is_a_warning(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    sequences = _copy(tmp_path)
    path = sequences / "partner-hesitant.yaml"
    text = path.read_text()
    assert text.count(IMMEDIATE) == 1
    path.write_text(text.replace(IMMEDIATE, ""))
    line = _line_of(text.replace(IMMEDIATE, ""), "  - key: welcome")
    cli_env["NURTURE_SEQUENCES_DIR"] = str(sequences)
    result = nurture("sequences", "validate", env=cli_env)
    assert result.returncode == 0, "a warning does not fail validate"
    assert (f"{path}:{line}: warning: step 'welcome' is the first email after confirming, and "
            "it waits for the send window (09:00-20:00)") in result.stdout
    assert "Fix: add `immediate: true` to this step" in result.stdout
    assert "1 warning(s)" in result.stdout


def test_only_sequences_a_confirmation_starts_get_the_warning(tmp_path: Path) -> None:
    sequences = _copy(tmp_path)
    # The sample is no confirmation's sequence (selection.yaml sends everyone elsewhere), and the
    # follow-ups start from a quiet link: none of them warns without `immediate`.
    sample = sequences / "sample.yaml"
    sample.write_text(sample.read_text().replace(IMMEDIATE, ""))
    _, _, problems = check_content(sequences, ROOT / "templates", rules=False)
    assert not [p for p in problems if "first email after confirming" in p.message]
    (sequences / "selection.yaml").write_text("default: sample\n")
    _, _, problems = check_content(sequences, ROOT / "templates", rules=False)
    [warning] = [p for p in problems if "first email after confirming" in p.message]
    assert warning.path == sample and warning.severity is Severity.WARNING


def test_timeline_shows_the_first_email_at_once_after_confirming(
        cli_env: dict[str, str]) -> None:
    start = ["--start", "2026-03-03T03:00", "--time-zone", "Asia/Kolkata", "--json"]
    result = nurture("timeline", "partner-hesitant", *start, env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = {row["step"]: row for row in json.loads(result.stdout)}
    assert rows["welcome"]["local"] == "Tue 2026-03-03 03:00 IST"
    assert rows["welcome"]["note"] == "at once after confirming"
    assert rows["why-they-hesitate"]["local"] == "Thu 2026-03-05 09:00 IST"
    assert "moved into the send window" in rows["why-they-hesitate"]["note"]

    by_operator = nurture("timeline", "partner-hesitant", *start, "--joined-by", "operator",
                          env=cli_env)
    assert by_operator.returncode == 0, by_operator.stderr
    welcome = next(r for r in json.loads(by_operator.stdout) if r["step"] == "welcome")
    assert welcome["local"] == "Tue 2026-03-03 09:00 IST"
    assert welcome["note"] == "moved into the send window"
