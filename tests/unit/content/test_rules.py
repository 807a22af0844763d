"""content_rules: each rule on a small broken fixture, the readability formula, and the report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from nurture.content.readability import (
    StepReadability,
    flesch_reading_ease,
    readability_report,
    syllables,
)
from nurture.content.rules import check_rules
from nurture.content.samples import body_text
from nurture.content.sequences import load_sequence_file
from nurture.domain.model import Sequence
from nurture.domain.problems import ContentProblem, Severity
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.vocabulary import TEXT_LAYOUT
from tests.support.paths import ROOT

TEMPLATES = ROOT / "templates"
SENTENCES = "This is a short note. It has a few plain words. We hope you like it."
PLAIN = "Hi{% if first_name %} {{ first_name }}{% endif %},\n\n" + SENTENCES + "\n"


def step(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "delay": "1d",
        "template": f"probe/{key}.md",
        "subject": "A note",
        "discreet_subject": "A note",
        "discreet_preheader": "Something to read",
        **fields,
    }


def make(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    bodies: dict[str, str] | None = None,
    *,
    key: str = "probe",
) -> tuple[dict[str, Sequence], TemplateLibrary]:
    root = tmp_path / "templates"
    if not root.exists():
        shutil.copytree(TEMPLATES / "layouts", root / "layouts")
        shutil.copytree(TEMPLATES / "locales", root / "locales")
    for entry in steps:
        path = root / "emails" / entry["template"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((bodies or {}).get(entry["key"], PLAIN), encoding="utf-8")
    sequences_dir = tmp_path / "sequences"
    sequences_dir.mkdir(exist_ok=True)
    source = sequences_dir / f"{key}.yaml"
    source.write_text(yaml.safe_dump({"key": key, "name": "Probe", "steps": steps}, sort_keys=False))
    sequence, problems = load_sequence_file(source)
    assert sequence is not None, problems
    return {key: sequence}, TemplateLibrary(root)


def line_of(sequences: dict[str, Sequence], key: str) -> int:
    found = next(iter(sequences.values())).step(key)
    assert found is not None
    return found.line


def errors(problems: list[ContentProblem]) -> list[ContentProblem]:
    return [p for p in problems if p.severity is Severity.ERROR]


# --- readability --------------------------------------------------------------------------


def test_flesch_reading_ease_follows_the_formula() -> None:
    # 6 words of one syllable in one sentence.
    assert flesch_reading_ease("The cat sat on the mat.") == pytest.approx(206.835 - 1.015 * 6 - 84.6)
    # A heading without a full stop is a sentence of its own; the URL is not words.
    text = "Read more\n\nSee it (https://example.org/a-long-path-with-words)."
    assert flesch_reading_ease(text) == pytest.approx(206.835 - 1.015 * 2 - 84.6)
    assert flesch_reading_ease("") == 0.0


def test_wrapped_lines_and_list_items_are_joined_back() -> None:
    wrapped = "- one two three\n  four five.\n- six seven."
    assert flesch_reading_ease(wrapped) == flesch_reading_ease("One two three four five. Six seven.")


def test_syllables_come_from_pyphen() -> None:
    assert syllables("conversation") == 4
    assert syllables("cat") == 1
    assert syllables("don't") == syllables("dont")
    assert syllables("side-by-side") == 3


def test_body_text_stops_at_the_footer_separator() -> None:
    assert body_text("Hello.\n\n----------\nFooter\n", "----------") == "Hello.\n"
    assert body_text("Hello.\n", "----------") == "Hello.\n"
    assert body_text("Hello.\n", None) == "Hello.\n"


def test_hard_text_is_a_warning_at_the_step_with_its_score(tmp_path: Path) -> None:
    hard = (
        "Hi,\n\nInterpersonal communication difficulties characteristically necessitate "
        "comprehensive psychological intervention, particularly considering organisational "
        "responsibilities and intergenerational expectations.\n"
    )
    sequences, library = make(tmp_path, [step("easy"), step("hard")], {"hard": hard})
    problems = check_rules(sequences, library)
    [warning] = problems
    assert warning.severity is Severity.WARNING
    assert (warning.path.name, warning.line) == ("probe.yaml", line_of(sequences, "hard"))
    assert "Flesch reading ease" in warning.message and "below 60" in warning.message
    assert check_rules(sequences, library, readability_floor=-1000.0) == []
    report = readability_report(sequences, library)
    assert [(r.sequence, r.step) for r in report] == [("probe", "easy"), ("probe", "hard")]
    assert report[0].score >= 60 > report[1].score
    assert isinstance(report[0], StepReadability)


def test_readability_ignores_the_footer(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("easy")])
    [entry] = readability_report(sequences, library)
    alone = flesch_reading_ease("Hi Sam,\n\n" + SENTENCES)
    assert entry.score == round(alone, 1)


# --- footer -------------------------------------------------------------------------------


def test_clean_content_has_no_problems(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one"), step("two")])
    assert check_rules(sequences, library) == []


def test_a_text_layout_without_the_unsubscribe_link_is_an_error_at_each_step(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one"), step("two")])
    layout = library.templates_dir / TEXT_LAYOUT
    source = layout.read_text(encoding="utf-8")
    layout.write_text(source.replace("{{ texts.text_unsubscribe }} {{ unsubscribe_url }}\n", ""))
    problems = check_rules(sequences, TemplateLibrary(library.templates_dir))
    assert {(p.path.name, p.line) for p in problems} == {
        ("probe.yaml", line_of(sequences, "one")),
        ("probe.yaml", line_of(sequences, "two")),
    }
    assert all("text part lacks the unsubscribe link" in p.message for p in problems)
    assert all(p.severity is Severity.ERROR for p in problems)


def test_an_html_layout_without_the_crisis_block_is_an_error(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one")])
    layout = library.templates_dir / "layouts" / "email.html"
    source = layout.read_text(encoding="utf-8")
    layout.write_text(source.replace("<p><strong>{{ crisis.heading }}</strong></p>", ""))
    messages = {p.message for p in check_rules(sequences, TemplateLibrary(library.templates_dir))}
    assert "step 'one': the HTML part lacks the crisis heading (locale en)" in messages
    assert "step 'one': the HTML part lacks the crisis heading (locale en-IN)" in messages
    assert not any("text part" in m for m in messages)


@pytest.mark.parametrize(("html", "named"), [
    ("<script>alert(1)</script>", "<script>"),
    ('<img src="x.png" alt="" onerror="alert(1)">', "onerror"),
    ('<a href="javascript:alert(1)">here</a>', "a javascript: link"),
    ('<iframe src="https://example.org/"></iframe>', "<iframe>"),
])
def test_html_that_would_run_or_load_on_its_own_is_an_error(
    tmp_path: Path, html: str, named: str,
) -> None:
    # Typed into the layout in the browser editor as into a file: refused before it is saved.
    sequences, library = make(tmp_path, [step("one")])
    layout = library.templates_dir / "layouts" / "email.html"
    layout.write_text(layout.read_text(encoding="utf-8").replace("</body>", html + "\n</body>"))
    [problem] = errors(check_rules(sequences, TemplateLibrary(library.templates_dir)))
    assert problem.message.startswith(f"step 'one': the HTML holds {named}, which an email must not")


def test_missing_postal_address_and_pause_link_are_named(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one")])
    layout = library.templates_dir / TEXT_LAYOUT
    source = layout.read_text(encoding="utf-8")
    source = source.replace("{{ postal_address }}", "").replace(
        "{{ texts.text_settings }} {{ preferences_url }}", ""
    )
    layout.write_text(source)
    messages = " ".join(p.message for p in check_rules(sequences, TemplateLibrary(library.templates_dir)))
    assert "text part lacks the postal address" in messages
    assert "text part lacks the pause / preferences link" in messages


# --- discreet subjects --------------------------------------------------------------------


def test_a_step_without_a_discreet_subject_is_an_error(tmp_path: Path) -> None:
    entry = step("one")
    del entry["discreet_subject"]
    sequences, library = make(tmp_path, [entry])
    [problem] = errors(check_rules(sequences, library))
    assert problem.message == "step 'one' has no discreet_subject"
    assert problem.line == line_of(sequences, "one")


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("discreet_subject", "Your therapy notes", "therapy"),
        ("discreet_subject", "THERAPIST's corner", "THERAPIST's"),
        ("discreet_subject", "For partners", "partners"),
        ("discreet_preheader", "Ideas for couples", "couples"),
        ("discreet_preheader", "Talking with your Husband", "Husband"),
        ("discreet_subject", "{% if first_name %}{{ first_name }}: {% endif %}marriage", "marriage"),
    ],
)
def test_revealing_words_in_discreet_headers_are_errors(
    tmp_path: Path, field: str, value: str, word: str
) -> None:
    sequences, library = make(tmp_path, [step("one", **{field: value})])
    [problem] = errors(check_rules(sequences, library))
    assert f"'{word}'" in problem.message
    assert field.removeprefix("discreet_") in problem.message
    assert (problem.path.name, problem.line) == ("probe.yaml", line_of(sequences, "one"))


def test_neutral_words_that_contain_revealing_ones_pass(tmp_path: Path) -> None:
    entry = step("one", discreet_subject="A partnership update", discreet_preheader="Coupled with tea")
    sequences, library = make(tmp_path, [entry])
    assert check_rules(sequences, library) == []


def test_a_missing_discreet_preheader_falls_back_to_the_regular_one_and_is_checked(
    tmp_path: Path,
) -> None:
    entry = step("one", preheader="Why your partner hesitates")
    del entry["discreet_preheader"]
    sequences, library = make(tmp_path, [entry])
    [problem] = errors(check_rules(sequences, library))
    assert "discreet preheader reveals the topic with 'partner'" in problem.message


def test_the_revealing_words_are_configurable(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one", discreet_subject="Garden notes")])
    assert check_rules(sequences, library) == []
    [problem] = check_rules(sequences, library, revealing_words=frozenset({"garden"}))
    assert "'Garden'" in problem.message


# --- no booking before the consult step ----------------------------------------------------


def test_asking_to_book_before_the_consult_step_is_an_error(tmp_path: Path) -> None:
    bodies = {
        "welcome": PLAIN + "\nYou could book a call.\n",
        "consult-invitation": PLAIN + "\nBook a free call here.\n",
        "after": PLAIN + "\nIf you are booking, good.\n",
    }
    steps = [step("welcome"), step("consult-invitation"), step("after")]
    sequences, library = make(tmp_path, steps, bodies)
    [problem] = check_rules(sequences, library)
    assert problem.line == line_of(sequences, "welcome")
    assert "comes before 'consult-invitation' but asks to book: 'book'" in problem.message


@pytest.mark.parametrize(
    ("sentence", "found"),
    [
        ("Why not schedule a call with someone?", "schedule a call"),
        ("You can sign up for a free consult.", "sign up for a free consult"),
        ("{% if 'stigma' in hesitations %}Bookings are open.{% endif %}", "Bookings"),
        ("Please make an appointment.", "make an appointment"),
    ],
)
def test_booking_phrases_are_found_in_any_section(tmp_path: Path, sentence: str, found: str) -> None:
    steps = [step("early"), step("consult-invitation")]
    sequences, library = make(tmp_path, steps, {"early": PLAIN + "\n" + sentence + "\n"})
    [problem] = check_rules(sequences, library)
    assert f"asks to book: '{found}'" in problem.message


def test_booking_words_are_fine_without_a_consult_step_or_in_the_footer(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("early")], {"early": PLAIN + "\nYou can book a call.\n"})
    assert check_rules(sequences, library) == []
    steps = [step("early"), step("consult-invitation")]
    sequences, library = make(tmp_path / "second", steps)
    layout = library.templates_dir / TEXT_LAYOUT
    layout.write_text(layout.read_text(encoding="utf-8") + "Book club on Fridays.\n")
    assert check_rules(sequences, TemplateLibrary(library.templates_dir)) == []


def test_words_that_merely_contain_book_pass(tmp_path: Path) -> None:
    steps = [step("early"), step("consult-invitation")]
    body = PLAIN + "\nWrite it in a notebook, or on Facebook.\n"
    sequences, library = make(tmp_path, steps, {"early": body})
    assert check_rules(sequences, library) == []


# --- rendering failures ---------------------------------------------------------------------


def test_a_step_that_cannot_render_is_an_error_at_the_step(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one")], {"one": "Call {{ crisis.phone }}\n"})
    [problem] = check_rules(sequences, library)
    assert problem.line == line_of(sequences, "one")
    assert "could not be rendered" in problem.message and "phone" in problem.message
    assert readability_report(sequences, library) == []
