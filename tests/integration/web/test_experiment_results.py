"""The admin results page with an experiment run for real (SQLite and PostgreSQL, a real SMTP
server): an SVG with one bar and one interval per arm, labelled, then the status and the rule's
reason while it runs, and the decision with its date once judged."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path

from sqlalchemy.engine import Engine

from nurture.services.experiments import judge_experiments
from tests.support.admin import AdminWeb
from tests.support.experiments import EXPERIMENT, START, ExperimentRun, experiment_content
from tests.support.smtp import RecordingSmtpServer


def _experiment_section(html: str) -> str:
    section = html[html.index(f'id="experiment-{EXPERIMENT}"'):]
    return section[:section.index("</section>")]


def test_results_show_each_arm_of_an_experiment_and_its_decision(
        admin: AdminWeb, engine: Engine, smtp_server: RecordingSmtpServer, tmp_path: Path) -> None:
    run = ExperimentRun(engine, experiment_content(
        tmp_path, lambda text: text.replace("min_people: 1000", "min_people: 100")
                                   .replace("min_duration: 14d", "min_duration: 1d")), smtp_server.url)
    run.enroll(300, START)
    reached = run.run_until_tested(START)
    run.convert({"a": 0.02, "b": 0.35, "holdout": 0.01})
    judged_at = reached + timedelta(days=9)
    admin.clock.now = judged_at
    browser = admin.signed_in()

    running = browser.get("/admin/results?sequence=sample")
    assert running.status_code == 200, running.text
    section = _experiment_section(running.text)
    svg = section[section.index("<svg"):section.index("</svg>")]
    assert "<script" not in svg and 'role="img"' in svg
    assert "<title" in svg and "<desc" in svg
    assert re.findall(r'data-arm="([a-z]+)"', svg) == ["a", "b", "holdout"]
    assert svg.count('class="funnel-bar arm-bar"') == 3
    assert svg.count('class="arm-interval"') == 3
    labels = [unescape(text) for text in re.findall(r'class="funnel-label"[^>]*>([^<]*)<', svg)]
    assert len(labels) == 3 and labels[1].startswith("b: ")
    assert all(" sends, " in label and " conversions, " in label for label in labels)
    assert "P(best)" in labels[0] and "P(best)" not in labels[2], "the holdout is no candidate"
    assert "Status:</strong> running" in section and "Not decided yet" in section
    # The page judges with the file's rule (1,000 people a variant): not yet met here.
    assert "1000" in unescape(section) or "1,000" in unescape(section)

    recorded = judge_experiments(engine, run.content, judged_at)
    assert [(entry.kind, entry.variant) for entry in recorded] == [("winner", "b")]
    decided = _experiment_section(browser.get("/admin/results").text)
    assert "Status:</strong> winner declared" in decided
    assert f"b was declared the winner on {judged_at:%Y-%m-%d}" in decided
    assert unescape(decided).count("everyone gets b (promoted)") == 1
