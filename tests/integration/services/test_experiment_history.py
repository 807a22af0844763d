"""An experiment's history: a winner pinned in the file goes to everyone not yet assigned and is
recorded once; a variant removed by an edit is recorded in the history and on the content
version's record, and its people get the step as written."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from nurture.content.library import load_content
from nurture.services.experiments import judge_experiments, report
from nurture.store.content_versions import record_content_version
from nurture.store.experiments import PINNED, VARIANT_REMOVED, history
from nurture.store.models import ContentVersion, Delivery
from tests.support.experiments import EXPERIMENT, START, STEP, ExperimentRun, experiment_content
from tests.support.smtp import RecordingSmtpServer

PIN = "      variants:"


def test_a_pinned_winner_goes_to_everyone_not_yet_assigned(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(tmp_path), smtp_server.url)
    run.enroll(80, START)
    run.run_until_tested(START)
    before = run.arms()
    assert {arm for arm, _, _ in before.values()} == {"a", "b", "holdout"}

    run.content = experiment_content(tmp_path / "pinned",
                                     lambda text: text.replace(PIN, "      winner: a\n" + PIN))
    moment = START + timedelta(days=12)
    recorded = judge_experiments(engine, run.content, moment)
    assert [(entry.kind, entry.variant) for entry in recorded] == [(PINNED, "a")]
    assert judge_experiments(engine, run.content, moment) == []
    assert report(engine, run.content, moment)[0].status == "pinned"
    run.enroll(40, moment, prefix="after-pin")
    run.run_until_tested(moment)
    after = {key: value for key, value in run.arms().items() if key not in before}
    assert Counter((arm, by) for arm, by, _ in after.values()) == Counter({("a", "winner"): 40})
    assert {key: value[0] for key, value in run.arms().items() if key in before} == \
        {key: value[0] for key, value in before.items()}


def test_a_removed_variant_is_recorded_in_the_history_and_the_version_record(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(tmp_path), smtp_server.url)
    run.enroll(60, START)
    run.run_until_tested(START)
    edited = tmp_path / "edited"
    run.content = experiment_content(edited, lambda text: text.replace("- key: b", "- key: c"))
    moment = START + timedelta(days=12)
    assert record_content_version(engine, run.content.version, run.content.files, moment)
    recorded = judge_experiments(engine, run.content, moment)
    assert [(entry.kind, entry.variant) for entry in recorded] == [(VARIANT_REMOVED, "b")]
    assert "variant b of experiment" in recorded[0].reason
    assert [entry.kind for entry in history(engine, [EXPERIMENT])] == [VARIANT_REMOVED]
    with engine.connect() as conn:
        notes = conn.scalar(select(ContentVersion.notes)
                            .where(ContentVersion.id == run.content.version))
    assert notes == [recorded[0].reason]
    reloaded = load_content(edited / "content" / "sequences", edited / "content" / "templates")
    assert reloaded.version == run.content.version


def test_going_through_the_sequence_again_keeps_the_arm(
        engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(tmp_path), smtp_server.url)
    run.enroll(60, START)
    run.run_until_tested(START)  # the tested step is the last: every enrollment completes
    first = run.arms()
    again = START + timedelta(days=20)
    run.enroll(60, again)  # the same people, a second enrollment
    run.run_until_tested(again)
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.subscriber_id, Delivery.variant, Delivery.assigned_by,
                                   Delivery.enrollment_id)
                            .where(Delivery.step_key == STEP)).all()
    assert len({row.enrollment_id for row in rows}) == 120
    second = [row for row in rows if row.assigned_by == "earlier"]
    assert len(second) == 60
    assert all(row.variant == first[row.subscriber_id][0] for row in second)
