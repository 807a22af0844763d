"""Clicks in experiment results, on SQLite and PostgreSQL: each arm's judged people whose tested
email had a counted click within the window; a click after the window, or on another email, is
not the arm's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from nurture.services.experiments import report
from nurture.store.clicks import record_click
from nurture.store.experiments import arm_tallies
from nurture.store.models import Delivery
from tests.support.experiments import EXPERIMENT, START, STEP, ExperimentRun, experiment_content
from tests.support.smtp import RecordingSmtpServer


def test_each_arm_counts_the_people_who_clicked_within_the_window(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(tmp_path), smtp_server.url)
    run.enroll(60, START)
    reached = run.run_until_tested(START)
    with engine.connect() as conn:
        tested = conn.execute(select(Delivery.id, Delivery.variant, Delivery.sent_at)
                              .where(Delivery.step_key == STEP, Delivery.status == "sent")
                              .order_by(Delivery.id)).all()
        other = conn.scalars(select(Delivery.id).where(Delivery.step_key != STEP,
                                                       Delivery.status == "sent")).first()
    assert tested and other is not None
    expected = {"a": 0, "b": 0}
    for index, (delivery_id, arm, sent_at) in enumerate(tested):
        if index % 3 == 0:  # clicked twice within a day: one person, counted once
            record_click(engine, delivery_id, sent_at + timedelta(hours=1))
            record_click(engine, delivery_id, sent_at + timedelta(hours=2))
            expected[arm] += 1
        elif index % 3 == 1:  # first clicked after the 7-day window: not the arm's
            record_click(engine, delivery_id, sent_at + timedelta(days=8))
    record_click(engine, other, reached)
    judged_at = reached + timedelta(days=9)
    experiment = next(step.experiment for _, step in run.content.experiments
                      if step.experiment is not None and step.experiment.key == EXPERIMENT)
    tallies = arm_tallies(engine, EXPERIMENT, metric=experiment.metric, window=experiment.window,
                          now=judged_at)
    assert {arm: tally.clicked for arm, tally in tallies.items() if arm != "holdout"} == expected
    assert tallies.get("holdout") is None or tallies["holdout"].clicked == 0
    figures = report(engine, run.content, judged_at)[0].as_dict()
    assert {arm["key"]: arm["clicks"] for arm in figures["variants"]} == expected
    assert sum(expected.values()) > 0
