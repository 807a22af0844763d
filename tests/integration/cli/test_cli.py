"""The `nurture` command driven as a subprocess, as an operator would: validate, db, enroll, dispatch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.support.cli import nurture
from tests.support.paths import ROOT


def test_validate_passes_on_the_shipped_content(cli_env: dict[str, str]) -> None:
    result = nurture("sequences", "validate", env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout


def test_validate_names_file_line_and_fix(cli_env: dict[str, str], tmp_path: Path) -> None:
    sequences = tmp_path / "sequences"
    shutil.copytree(ROOT / "sequences", sequences)
    broken = (sequences / "sample.yaml").read_text().replace("delay: 2d", "delay: 2 days")
    (sequences / "sample.yaml").write_text(broken)
    line = broken.splitlines().index("    delay: 2 days") + 1
    cli_env["NURTURE_SEQUENCES_DIR"] = str(sequences)
    result = nurture("sequences", "validate", env=cli_env)
    assert result.returncode == 1
    assert f"{sequences / 'sample.yaml'}:{line}: error: '2 days' is not a delay" in result.stdout
    assert "Fix: write a whole number with a unit" in result.stdout


def test_bad_setting_stops_the_process_naming_the_variable(cli_env: dict[str, str]) -> None:
    cli_env["NURTURE_SMTP_URL"] = "mail.example.org:25"
    result = nurture("dispatch", env=cli_env)
    assert result.returncode == 2
    assert "NURTURE_SMTP_URL" in result.stderr


def test_unmigrated_database_is_refused_with_the_command_to_run(cli_env: dict[str, str]) -> None:
    result = nurture("dispatch", env=cli_env)
    assert result.returncode == 1
    assert "nurture db upgrade" in result.stderr


def test_enroll_and_dispatch_through_time(cli_env: dict[str, str], smtp_server: Any) -> None:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    enrolled = nurture("enroll", "asha@example.org", "--sequence", "sample", "--first-name",
                       "Asha", "--time-zone", "Europe/London", "--hesitations", "stigma",
                       "--now", "2026-03-02T10:00:00Z", env=cli_env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "enrolled 1" in enrolled.stdout

    again = nurture("enroll", "Asha@Example.org", "--sequence", "sample", "--now",
                    "2026-03-02T10:00:00Z", env=cli_env)
    assert "already enrolled" in again.stdout

    first = nurture("dispatch", "--now", "2026-03-02T10:00:00Z", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "sent=1" in first.stdout
    repeat = nurture("dispatch", "--now", "2026-03-02T10:00:00Z", env=cli_env)
    assert "sent=0" in repeat.stdout
    later = nurture("dispatch", "--now", "2026-03-04T10:00:00Z", env=cli_env)
    assert "sent=1" in later.stdout
    assert [m.message["Subject"] for m in smtp_server.messages] == [
        "Asha, you are not alone in this", "Why asking for help can feel risky to them"]


def test_enroll_rejects_bad_input_clearly(cli_env: dict[str, str]) -> None:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    bad_zone = nurture("enroll", "a@example.org", "--sequence", "sample", "--time-zone",
                       "Mars/Olympus", env=cli_env)
    assert bad_zone.returncode == 1 and "time_zone" in bad_zone.stderr
    bad_sequence = nurture("enroll", "a@example.org", "--sequence", "nope", env=cli_env)
    assert bad_sequence.returncode == 1 and "no sequence 'nope'" in bad_sequence.stderr


def test_csv_import_reports_rejected_rows_and_imports_the_rest(cli_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    rows = ["email,first_name,time_zone,hesitations"]
    rows += [f"person{i}@example.org,P{i},Europe/London,stigma;fear_of_blame" for i in range(10_000)]
    rows.insert(5, "not-an-address,X,UTC,")
    rows.insert(9, "ok@example.org,Bob,Mars/Olympus,")
    rows.insert(12, "other@example.org,Cy,UTC,astrology")
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join(rows) + "\n")
    result = nurture("enroll", "--from-csv", str(path), "--sequence", "sample", "--now",
                     "2026-03-02T10:00:00Z", env=cli_env)
    print(result.stdout.splitlines()[-1])
    assert f"{path}:6: rejected: email:" in result.stdout
    assert f"{path}:10: rejected: time_zone:" in result.stdout
    assert f"{path}:13: rejected: hesitations: unknown reason astrology" in result.stdout
    assert "enrolled 10000," in result.stdout
    assert result.returncode == 1, "rejected rows make the exit code 1"
