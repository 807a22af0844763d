"""Experiments end to end on SQLite and PostgreSQL: arms drawn at the claim and recorded on the
delivery, the holdout skipped with its reason, conversions counted within the window, a winner
declared once and promoted to the people assigned after it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from nurture.services.experiments import judge_experiments, report
from nurture.store.experiments import WINNER, history
from nurture.store.models import Delivery
from tests.support.experiments import EXPERIMENT, START, STEP, ExperimentRun, experiment_content
from tests.support.smtp import RecordingSmtpServer


def test_arms_are_recorded_at_the_claim_and_the_holdout_skips_the_step(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(tmp_path), smtp_server.url)
    run.enroll(300, START)
    run.run_until_tested(START)
    arms = run.arms()
    counts = Counter(arm for arm, _, _ in arms.values())
    assert set(counts) == {"a", "b", "holdout"} and sum(counts.values()) == 300
    assert 10 <= counts["holdout"] <= 55  # 10% of 300, give or take chance
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.variant, Delivery.status, Delivery.skip_reason,
                                   Delivery.message_id, Delivery.id)
                            .where(Delivery.step_key == STEP)).all()
    for variant, status, reason, message_id, delivery_id in rows:
        if variant == "holdout":
            assert (status, reason) == ("skipped", f"holdout of experiment {EXPERIMENT}")
        else:
            assert status == "sent"
            assert message_id == f"<{delivery_id.hex}@nurture.test>"
    subjects = Counter(m.message["Subject"] for m in smtp_server.messages
                       if m.message["Subject"] in ("One small step you can take this week",
                                                   "A first step that is yours alone"))
    assert subjects["One small step you can take this week"] == counts["a"]
    assert subjects["A first step that is yours alone"] == counts["b"]


def test_results_count_conversions_within_the_window_and_a_winner_is_promoted(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(
        tmp_path, lambda text: text.replace("min_people: 1000", "min_people: 200")
                                   .replace("min_duration: 14d", "min_duration: 1d")), smtp_server.url)
    run.enroll(1400, START)
    reached = run.run_until_tested(START)
    run.convert({"a": 0.02, "b": 0.25, "holdout": 0.01})
    late = run.convert({"a": 0.5}, after=timedelta(days=9), seed=8)  # outside the 7-day window
    assert late > 0
    judged_at = reached + timedelta(days=9)
    found = report(engine, run.content, judged_at)[0]
    figures = found.as_dict()
    by_key = {arm["key"]: arm for arm in figures["variants"]}
    assert by_key["a"]["rate"] < 0.05 < 0.2 < by_key["b"]["rate"]
    assert figures["holdout"]["sends"] > 0 and figures["status"] == "running"
    assert figures["rule_winner"] == "b"
    recorded = judge_experiments(engine, run.content, judged_at)
    assert [(entry.kind, entry.variant) for entry in recorded] == [(WINNER, "b")]
    assert judge_experiments(engine, run.content, judged_at + timedelta(hours=1)) == []
    assert report(engine, run.content, judged_at)[0].status == "winner declared"
    before = run.arms()

    run.enroll(100, judged_at, prefix="later")
    run.run_until_tested(judged_at)
    after = {key: value for key, value in run.arms().items() if key not in before}
    assert len(after) == 100
    assert {(arm, by) for arm, by, _ in after.values()} == {("b", "winner")}
    assert {key: value[0] for key, value in run.arms().items() if key in before} == \
        {key: value[0] for key, value in before.items()}
    assert [entry.kind for entry in history(engine, [EXPERIMENT])] == [WINNER]
