"""The validate rules of the care issue, each on a small broken fixture: a step that asks the reader
to talk without the safety note, a bad `asks_to_talk`, a discreet opening that names the topic, the
framing and the helpline directory in the footer, and quiet links that are not an ask to book."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from nurture.content.library import check_content
from nurture.content.rules import check_rules
from nurture.content.safety import TALK_SAFETY_PARTIAL, check_talk_safety
from nurture.content.sequences import load_sequence_file
from nurture.domain.problems import ContentProblem
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.vocabulary import TEXT_LAYOUT
from tests.unit.content.test_rules import PLAIN, SENTENCES, TEMPLATES, errors, line_of, make, step

INCLUDE = f'{{% include "{TALK_SAFETY_PARTIAL}" %}}'
TALKING = PLAIN + "\nYou could talk to them about it tonight.\n\n"


def with_partials(library: TemplateLibrary) -> Path:
    shutil.copytree(TEMPLATES / "emails" / "partials", library.templates_dir / "emails" / "partials")
    return library.templates_dir


def validate(tmp_path: Path, templates: Path) -> list[ContentProblem]:
    """What `nurture sequences validate` reports for the fixture (check_content is what it runs)."""
    _, _, problems = check_content(tmp_path / "sequences", templates)
    return errors(problems)


# --- the safety note ------------------------------------------------------------------------


def test_a_step_that_asks_to_talk_without_the_safety_note_is_refused(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("talk", asks_to_talk=True)], {"talk": TALKING})
    templates = with_partials(library)
    [problem] = check_talk_safety(sequences, templates)
    assert (problem.path.name, problem.line) == ("probe.yaml", line_of(sequences, "talk"))
    assert "step 'talk' asks the reader to talk to their partner (asks_to_talk: true)" in problem.message
    assert "does not include the safety note" in problem.message
    assert f"add {INCLUDE} on a line of its own in templates/emails/probe/talk.md" in problem.fix
    assert str(problem) in {str(p) for p in validate(tmp_path, templates)}


def test_a_safety_note_inside_a_condition_is_refused_at_its_line(tmp_path: Path) -> None:
    body = TALKING + "{% if 'stigma' in hesitations %}\n" + INCLUDE + "\n\n{% endif %}\n"
    sequences, library = make(tmp_path, [step("talk", asks_to_talk=True)], {"talk": body})
    [problem] = check_talk_safety(sequences, with_partials(library))
    assert problem.path == library.templates_dir / "emails" / "probe" / "talk.md"
    assert problem.line == body.splitlines().index(INCLUDE) + 1
    assert "included inside a condition" in problem.message
    assert problem.fix.startswith(f"move {INCLUDE} out of the {{% if %}}")


def test_a_step_that_includes_the_note_passes_and_shows_it(tmp_path: Path) -> None:
    body = TALKING + INCLUDE + "\n\n" + SENTENCES + "\n"
    sequences, library = make(tmp_path, [step("talk", asks_to_talk=True)], {"talk": body})
    templates = with_partials(library)
    assert check_talk_safety(sequences, templates) == []
    assert validate(tmp_path, templates) == []
    # A step that does not ask to talk needs no note.
    assert check_talk_safety(make(tmp_path / "plain", [step("quiet")])[0], templates) == []


def test_asks_to_talk_must_be_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "probe.yaml"
    data = {"key": "probe", "name": "Probe", "steps": [step("talk", asks_to_talk="sometimes")]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    sequence, problems = load_sequence_file(path)
    assert sequence is None
    [problem] = problems
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "asks_to_talk" in text)
    assert (problem.path, problem.line) == (path, line)
    assert problem.message == "`asks_to_talk` in step 'talk' must be true or false"
    assert "write `asks_to_talk: true` or `asks_to_talk: false`" in problem.fix


# --- a discreet opening that names nothing -------------------------------------------------


def test_a_discreet_opening_that_names_the_topic_is_refused_at_the_template(tmp_path: Path) -> None:
    short = ("Hi{% if first_name %} {{ first_name }}{% endif %},\n\n{% if discreet %}\n"
             "Here is your next note.\n\n{% endif %}\nTalking to your partner about therapy is hard.\n\n"
             + SENTENCES * 4 + "\n")
    sequences, library = make(tmp_path, [step("one")], {"one": short})
    [problem] = errors(check_rules(sequences, library))
    assert problem.path == library.templates_dir / "emails" / "probe" / "one.md"
    assert problem.line == 3
    assert "the discreet text part names 'partner' in its first 300 characters" in problem.message
    assert "at least two neutral sentences in the {% if discreet %} block" in problem.fix
    neutral = short.replace("Here is your next note.", SENTENCES * 4)
    sequences, library = make(tmp_path / "fixed", [step("one")], {"one": neutral})
    assert check_rules(sequences, library) == []


def test_the_revealing_words_past_300_characters_are_fine(tmp_path: Path) -> None:
    body = PLAIN + "\n" + SENTENCES * 5 + "\n\nSome couples talk to a therapist.\n"
    sequences, library = make(tmp_path, [step("one")], {"one": body})
    assert check_rules(sequences, library) == []


# --- the footer: framing and directory ------------------------------------------------------


def add_to_locale(templates: Path, **crisis: object) -> None:
    path = templates / "locales" / "en.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["crisis"].update(crisis)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def test_a_layout_that_drops_the_framing_is_an_error_when_the_locale_has_one(tmp_path: Path) -> None:
    sequences, library = make(tmp_path, [step("one")])
    assert check_rules(sequences, library) == []
    add_to_locale(library.templates_dir, framing="These notes are information, not care.",
                  directory={"name": "Helplines", "url": "https://help.example.org/"})
    assert check_rules(sequences, TemplateLibrary(library.templates_dir)) == []
    layout = library.templates_dir / TEXT_LAYOUT
    source = layout.read_text(encoding="utf-8")
    layout.write_text(source.replace("{{ crisis.framing }}", "").replace("({{ crisis.directory.url }})", ""))
    messages = {p.message for p in check_rules(sequences, TemplateLibrary(library.templates_dir))}
    assert "step 'one': the text part lacks the framing (what these notes are and are not) (locale en)" \
        in messages
    assert "step 'one': the text part lacks the helpline directory link (locale en)" in messages


# --- quiet links are not an ask to book ----------------------------------------------------


def test_a_quiet_link_to_the_booked_page_is_not_an_ask_to_book(tmp_path: Path) -> None:
    quiet = PLAIN + "\n[We've set up a call]({{ booked_url }})\n"
    steps = [step("early"), step("consult-invitation")]
    sequences, library = make(tmp_path, steps, {"early": quiet})
    assert check_rules(sequences, library) == []
