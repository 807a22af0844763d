"""Experiments on the command line, as subprocesses on a seeded experiment (SQLite and PostgreSQL,
a real SMTP server): `nurture experiments` with its figures, --judge recording a winner once, the
per-variant block of `nurture stats`, the line of `sequences validate`, and --variant on preview,
timeline and send-test."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from nurture.services.experiments import report
from nurture.store.experiments import WINNER, history
from tests.support.cli import clean_env, nurture
from tests.support.experiments import EXPERIMENT, START, ExperimentRun, experiment_content
from tests.support.smtp import RecordingSmtpServer

B_SUBJECT = "A first step that is yours alone"


def _env(database_url: str, smtp_port: int, content: Path) -> dict[str, str]:
    return clean_env({
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NURTURE_SEQUENCES_DIR": str(content / "sequences"),
        "NURTURE_TEMPLATES_DIR": str(content / "templates"),
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_SENDER": "Nurture <hello@nurture.test>",
    })


def test_experiments_show_the_figures_and_judge_records_the_winner_once(
        database_url: str, engine: Engine, smtp_server: RecordingSmtpServer,
        tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(
        tmp_path, lambda text: text.replace("min_people: 1000", "min_people: 100")
                                   .replace("min_duration: 14d", "min_duration: 1d")), smtp_server.url)
    run.enroll(400, START)
    reached = run.run_until_tested(START)
    run.convert({"a": 0.02, "b": 0.3, "holdout": 0.01})
    at = (reached + timedelta(days=9)).isoformat()
    env = _env(database_url, smtp_server.port, tmp_path / "content")

    shown = nurture("experiments", "--json", "--at", at, env=env)
    assert shown.returncode == 0, shown.stderr
    [figures] = json.loads(shown.stdout)
    expected = report(engine, run.content, reached + timedelta(days=9))[0].as_dict()
    assert figures == json.loads(json.dumps(expected))
    assert (figures["experiment"], figures["status"], figures["rule_winner"]) == \
        (EXPERIMENT, "running", "b")
    assert [arm["key"] for arm in figures["variants"]] == ["a", "b"]
    assert sum(arm["sends"] for arm in [*figures["variants"], figures["holdout"]]) == 400

    judged = nurture("experiments", "--judge", "--at", at, env=env)
    assert judged.returncode == 0, judged.stderr
    assert f"recorded: {EXPERIMENT}" in judged.stdout and "winner  b" in judged.stdout
    again = nurture("experiments", "--judge", "--json", "--at", at, env=env)
    assert "recorded: nothing new" in again.stderr
    assert json.loads(again.stdout)[0]["status"] == "winner declared"
    assert [entry.kind for entry in history(engine, [EXPERIMENT])] == [WINNER]

    table = nurture("experiments", EXPERIMENT, "--at", at, env=env).stdout
    lines = table.splitlines()
    assert lines[0] == f"experiment {EXPERIMENT} on sample/next-steps: winner declared"
    assert "everyone gets b (promoted)" in table and "consult_booked within 7d" in table
    for arm in ("a", "b", "holdout"):
        assert any(line.split()[:1] == [arm] for line in lines), arm
    assert "rule: " in table and "winner  b" in table
    unknown = nurture("experiments", "no-such-test", env=env)
    assert unknown.returncode == 1 and EXPERIMENT in unknown.stderr

    stats = nurture("stats", "sample", "--json", env=env)
    rows = {row["step"]: row for row in json.loads(stats.stdout)}
    assert rows["next-steps"]["experiments"][0]["experiment"] == EXPERIMENT
    assert "experiments" not in rows["welcome"]
    plain = nurture("stats", "sample", env=env).stdout
    assert f"experiment {EXPERIMENT} on sample/next-steps: winner declared" in plain
    assert "rate (95% interval)" in plain


def test_validate_names_each_experiment(cli_env: dict[str, str]) -> None:
    result = nurture("sequences", "validate", env=cli_env)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("experiment ")]
    assert line.startswith(f"experiment {EXPERIMENT} on sample/next-steps: a 50% · b 50% · "
                           "holdout 10%; metric consult_booked within 7d; promote auto")


def test_variant_on_preview_timeline_and_send_test(
        cli_env: dict[str, str], smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    preview = nurture("preview", "sample", "next-steps", "--variant", "b", "--out", str(out),
                      env=cli_env)
    assert preview.returncode == 0, preview.stderr
    assert f"next-steps-b: {B_SUBJECT}" in preview.stdout
    assert (out / "next-steps-b.html").exists()
    as_written = nurture("preview", "sample", "next-steps", "--out", str(out), env=cli_env)
    assert B_SUBJECT not in as_written.stdout

    start = ["--start", "2026-03-06T20:00", "--time-zone", "Europe/London", "--json"]
    plain = {r["step"]: r for r in json.loads(nurture("timeline", "sample", *start,
                                                      env=cli_env).stdout)}
    as_b = {r["step"]: r for r in json.loads(nurture("timeline", "sample", *start, "--variant", "b",
                                                     env=cli_env).stdout)}
    assert B_SUBJECT in as_b["next-steps"]["note"] and as_b["next-steps"]["variant"] == "b"
    held = {r["step"]: r for r in json.loads(nurture("timeline", "sample", *start, "--variant",
                                                     "holdout", env=cli_env).stdout)}
    assert held["next-steps"]["sent"] is False
    assert held["next-steps"]["note"] == f"skipped: holdout of experiment {EXPERIMENT}"
    assert held["understanding"] == plain["understanding"], "the other steps keep their time"
    assert held["next-steps"]["utc"] == plain["next-steps"]["utc"]

    sent = nurture("send-test", "sample", "next-steps", "--to", "tester@example.org",
                   "--variant", "b", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    [message] = smtp_server.wait_for(1)
    assert message.message["Subject"] == f"[TEST] {B_SUBJECT}"

    for args, named in ((("preview", "sample", "next-steps", "--variant", "c"), "a, b"),
                        (("preview", "sample", "welcome", "--variant", "b"), "next-steps"),
                        (("send-test", "sample", "next-steps", "--to", "t@example.org",
                          "--variant", "holdout"), "a, b"),
                        (("timeline", "sample", *start, "--variant", "c"), "a, b, holdout")):
        refused = nurture(*args, env=cli_env)
        assert refused.returncode == 2, (args, refused.stderr)
        assert named in refused.stderr and "Traceback" not in refused.stderr
