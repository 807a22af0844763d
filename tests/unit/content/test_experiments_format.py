"""The `experiment:` block of a step: what loads, and each mistake named at its file:line with a
fix; every variant meets the content rules like any email."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from nurture.content.library import check_content
from nurture.domain.experiments import HOLDOUT
from nurture.domain.problems import Severity
from tests.support.schedulers import copy_content

EXPERIMENT = """
    experiment:
      key: sample-next-steps-subject
      metric: consult_booked
      window: 7d
      holdout: 10%        # these people skip this email; their next one keeps its timing
      promote: auto       # once a winner is declared, everyone assigned after gets it
      stop:
        min_people: 1000  # per variant, counted once their week is over
        min_duration: 14d
      variants:
        - key: a
          weight: 50
        - key: b
          weight: 50
          subject: A first step that is yours alone
          preheader: Something you can start this week, on your own terms"""


def _content(tmp_path: Path, block: str | None = None) -> tuple[Path, Path, Path]:
    sequences, templates = copy_content(tmp_path, all_day=False)
    path = sequences / "sample.yaml"
    text = path.read_text()
    start = text.index("\n    experiment:")
    if block is not None:
        text = text[:start] + block
    path.write_text(text if text.endswith("\n") else text + "\n")
    return sequences, templates, path


def _problems(tmp_path: Path, block: str) -> list[str]:
    sequences, templates, _ = _content(tmp_path, block)
    _, _, problems = check_content(sequences, templates)
    return [str(p) for p in problems if p.severity is Severity.ERROR]


def test_the_sample_experiment_loads_with_its_variants_and_rule(tmp_path: Path) -> None:
    sequences, templates, _ = _content(tmp_path)
    loaded, _, problems = check_content(sequences, templates)
    assert [p for p in problems if p.severity is Severity.ERROR] == []
    step = loaded["sample"].step("next-steps")
    assert step is not None and step.experiment is not None
    experiment = step.experiment
    assert (experiment.key, experiment.metric, experiment.window, experiment.holdout) == \
        ("sample-next-steps-subject", "consult_booked", timedelta(days=7), 0.1)
    assert experiment.auto_promote and experiment.winner is None
    assert (experiment.stop.min_exposed, experiment.stop.min_duration) == (1000, timedelta(days=14))
    a, b = (step.with_variant(key) for key in ("a", "b"))
    assert (a.subject, a.preheader, a.variant) == (step.subject, step.preheader, "a")
    assert (b.subject, b.template, b.discreet_subject) == \
        ("A first step that is yours alone", step.template, step.discreet_subject)
    assert step.with_variant("gone") is step and step.with_variant(HOLDOUT) is step
    assert [version.variant for version in step.versions()] == [None, "a", "b"]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda b: b.replace("- key: b\n          weight: 50", "- key: b\n          weight: 0"),
     "the weight of variant 'b'"),
    (lambda b: b.replace("- key: b", "- key: a"), "variant key 'a' is used twice"),
    (lambda b: b.replace("- key: b", "- key: holdout"), "'holdout' cannot name a variant"),
    (lambda b: b.replace("holdout: 10%", "holdout: 60%"), "outside 0 to 0.5"),
    (lambda b: b.replace("metric: consult_booked", "metric: opened"),
     "`metric: opened` is not one of"),
    (lambda b: b.replace("promote: auto", "promote: maybe"), "`promote: maybe`"),
    (lambda b: b.replace("      variants:", "      winner: c\n      variants:"),
     "the pinned winner 'c' is not a variant"),
    (lambda b: b.replace("window: 7d", "window: a week"), "the window 'a week' is not a duration"),
    (lambda b: b.split("        - key: b")[0], "needs 2 to 4 variants"),
    (lambda b: b + "".join(f"\n        - key: v{i}" for i in range(4)), "needs 2 to 4 variants"),
    (lambda b: b.replace("min_people: 1000", "min_people: -3"), "min_people must be a whole number"),
    (lambda b: b.replace("      variants:", "      colour: blue\n      variants:"),
     "unknown field 'colour'"),
])
def test_each_mistake_names_its_line_and_the_fix(tmp_path: Path, change: object,
                                                 expected: str) -> None:
    block = change(EXPERIMENT)  # type: ignore[operator]
    problems = _problems(tmp_path, block)
    assert any(expected in p and "sample.yaml:" in p and "Fix:" in p for p in problems), problems


def test_a_pin_names_a_real_variant(tmp_path: Path) -> None:
    pinned = EXPERIMENT.replace("      variants:", "      winner: b\n      variants:")
    assert _problems(tmp_path, pinned) == []


def test_every_variant_meets_the_content_rules(tmp_path: Path) -> None:
    # A discreet subject of a variant that names therapy is caught at the variant's line.
    block = EXPERIMENT + "\n          discreet_subject: Couples therapy, one step at a time"
    sequences, templates, path = _content(tmp_path, block)
    _, _, problems = check_content(sequences, templates)
    line = path.read_text().splitlines().index("        - key: b") + 1
    found = [p for p in problems if p.severity is Severity.ERROR]
    assert found and all(p.line == line for p in found), [str(p) for p in found]
    assert any("discreet" in p.message for p in found)


def test_a_variant_template_must_exist_and_render(tmp_path: Path) -> None:
    block = EXPERIMENT + "\n          template: sample/next-steps-warmer.md"
    assert any("next-steps-warmer.md" in p for p in _problems(tmp_path, block))


def test_an_experiment_key_names_one_experiment(tmp_path: Path) -> None:
    sequences, templates, path = _content(tmp_path, EXPERIMENT)
    text = path.read_text()
    welcome = "    discreet_preheader: A short hello and how to change your settings\n"
    path.write_text(text.replace(welcome, welcome + EXPERIMENT.lstrip("\n") + "\n", 1))
    _, _, problems = check_content(sequences, templates)
    assert any("experiment key 'sample-next-steps-subject' is also used" in str(p) for p in problems)
