"""Per-locale email texts on small fixtures: who gets which body and subject lines, the logged
fallback, validate's coverage errors and table, the per-locale discreet words and readability, and
a right-to-left locale's dir and lang."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import yaml

from nurture.cli.main import main
from nurture.content.library import check_content, load_content
from nurture.content.readability import sentence_measure
from nurture.content.rules import DEFAULT_REVEALING_WORDS, check_rules, word_pattern
from nurture.domain.model import Profile
from nurture.domain.problems import ContentProblem, Severity
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from tests.support.paths import ROOT

TEMPLATES = ROOT / "templates"
BRAND = Brand(sender="Nurture <hello@example.org>", discreet_sender_name="Notes",
              postal_address="1 Example Street", base_url="https://example.org")
LINKS = Links(unsubscribe_url="https://example.org/u/t", preferences_url="https://example.org/p/t")
ENGLISH = "Hi{% if first_name %} {{ first_name }}{% endif %},\n\nThis is a short note. It is plain.\n"
HINDI_BODY = ("नमस्ते{% if first_name %} {{ first_name }}{% endif %},\n\n"
              "यह एक छोटा नोट है। इसे आराम से पढ़ें।\n")
HINDI_FRONT = ('---\nsubject: "{% if first_name %}{{ first_name }}, {% endif %}आपका पहला नोट"\n'
               'preheader: "कुछ पढ़ने के लिए"\ndiscreet_subject: "आपके नोट्स"\n'
               'discreet_preheader: "इस हफ़्ते का नोट"\n---\n')
STEPS = ("first", "second")


def write_content(tmp_path: Path, hindi: dict[str, str] | None = None, *,
                  locales: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A sequence `probe` of two steps in English, with the given files in templates/emails/
    probe/hi-IN/ (all of both steps by default) and extra locale files."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES / "layouts", templates / "layouts")
    shutil.copytree(TEMPLATES / "locales", templates / "locales", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("hi-IN.yaml"))
    for name, text in (locales or {}).items():
        (templates / "locales" / name).write_text(text, encoding="utf-8")
    emails = templates / "emails" / "probe"
    emails.mkdir(parents=True)
    steps = []
    for key in STEPS:
        (emails / f"{key}.md").write_text(ENGLISH, encoding="utf-8")
        steps.append({"key": key, "delay": "1d", "template": f"probe/{key}.md",
                      "subject": f"Your {key} note", "preheader": "Something to read",
                      "discreet_subject": "A note", "discreet_preheader": "Something to read"})
    files = hindi if hindi is not None else {f"{key}.md": HINDI_FRONT + HINDI_BODY for key in STEPS}
    for name, text in files.items():
        (emails / "hi-IN").mkdir(exist_ok=True)
        (emails / "hi-IN" / name).write_text(text, encoding="utf-8")
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    (sequences / "probe.yaml").write_text(
        yaml.safe_dump({"key": "probe", "name": "Probe", "steps": steps}, sort_keys=False),
        encoding="utf-8")
    return sequences, templates


def render(library: TemplateLibrary, content_sequences: dict[str, object], step: str,
           locale: str, *, discreet: bool = False, first_name: str | None = "मीरा") -> RenderedEmail:
    sequence = content_sequences["probe"]
    found = sequence.step(step)  # type: ignore[attr-defined]
    recipient = Recipient(email="reader@example.org", first_name=first_name,
                          profile=Profile(locale=locale, discreet=discreet))
    return library.render(sequence, found, recipient, LINKS, BRAND)  # type: ignore[arg-type]


def errors(problems: list[ContentProblem]) -> list[ContentProblem]:
    return [p for p in problems if p.severity is Severity.ERROR]


# --- who gets which text -----------------------------------------------------------------------


def test_a_hindi_reader_gets_the_hindi_body_and_subjects_and_en_in_the_default(
        tmp_path: Path) -> None:
    content = load_content(*write_content(tmp_path))
    sequences = dict(content.sequences)
    hindi = render(content.library, sequences, "first", "hi-IN")
    assert hindi.subject == "मीरा, आपका पहला नोट"
    assert hindi.preheader == "कुछ पढ़ने के लिए"
    assert "यह एक छोटा नोट है।" in hindi.text and "यह एक छोटा नोट है।" in hindi.html
    assert "subject:" not in hindi.text and "---" not in hindi.text.split("----------")[0]
    discreet = render(content.library, sequences, "first", "hi-IN", discreet=True)
    assert (discreet.subject, discreet.preheader) == ("आपके नोट्स", "इस हफ़्ते का नोट")
    # The naive path (no structure cache) agrees.
    naive = content.library.render_naive(
        content.sequences["probe"], content.sequences["probe"].steps[0],
        Recipient("reader@example.org", "मीरा", Profile(locale="hi-IN")), LINKS, BRAND)
    assert (naive.subject, naive.text) == (hindi.subject, hindi.text)
    for locale in ("en-IN", "en"):
        english = render(content.library, sequences, "first", locale, first_name="Sam")
        assert english.subject == "Your first note"
        assert "This is a short note." in english.text


def test_a_fallback_is_logged_once_with_where_and_no_personal_data(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Only the first step has Hindi texts: validate refuses that, but the renderer must still
    # serve the second in English (content loaded before the folder was complete, for one).
    sequences_dir, templates = write_content(tmp_path, {"first.md": HINDI_FRONT + HINDI_BODY})
    sequences, library, problems = check_content(sequences_dir, templates, rules=False)
    assert library is not None and errors(problems)
    caplog.set_level(logging.INFO, logger="nurture.rendering.translations")
    for _ in range(3):
        email = render(library, dict(sequences), "second", "hi-IN")
    assert email.subject == "Your second note"
    logged = [r for r in caplog.records if r.name == "nurture.rendering.translations"]
    fields = {(r.locale, r.used_locale, r.sequence, r.step, r.field)  # type: ignore[attr-defined]
              for r in logged}
    assert ("hi-IN", "en", "probe", "second", "body") in fields
    assert ("hi-IN", "en", "probe", "second", "subject") in fields
    assert len(logged) == len(fields), "each fallback is logged once"
    assert not any("मीरा" in r.getMessage() or "reader@" in str(r.__dict__) for r in logged)
    caplog.clear()
    render(library, dict(sequences), "first", "hi-IN")
    render(library, dict(sequences), "first", "en-IN", first_name="Sam")
    assert not [r for r in caplog.records if r.name == "nurture.rendering.translations"], \
        "neither the hi-IN text nor an en-IN reader of the default texts is a fallback"


def test_a_locale_without_texts_of_its_own_falls_back_along_its_chain(tmp_path: Path) -> None:
    # A hi-XX reader's chain is (hi-XX, hi, en): no folder for either, so the default texts.
    _, templates = write_content(tmp_path)
    content = load_content(tmp_path / "sequences", templates)
    assert content.library.localize(content.sequences["probe"], content.sequences["probe"].steps[0],
                                    "hi-XX").sources["body"] == "en"
    assert content.library.localize(content.sequences["probe"], content.sequences["probe"].steps[0],
                                    "hi-IN").sources == {
        "body": "hi-IN", "subject": "hi-IN", "preheader": "hi-IN", "discreet_subject": "hi-IN",
        "discreet_preheader": "hi-IN"}


# --- validate -----------------------------------------------------------------------------------


def test_a_missing_step_a_missing_subject_and_a_stray_step_are_errors(tmp_path: Path) -> None:
    no_preheader = HINDI_FRONT.replace('preheader: "कुछ पढ़ने के लिए"\n', "")
    sequences_dir, templates = write_content(tmp_path, {
        "first.md": no_preheader + HINDI_BODY,
        "secnd.md": HINDI_FRONT + HINDI_BODY,
    })
    _, _, problems = check_content(sequences_dir, templates, rules=False)
    found = {(p.path.relative_to(templates).as_posix(), p.line, p.message, p.fix)
             for p in errors(problems)}
    folder = "emails/probe/hi-IN"
    assert any(path == folder and "lacks step 'second'" in message
               and "emails/probe/hi-IN/second.md" in fix for path, _, message, fix in found)
    assert any(path == f"{folder}/first.md" and line == 1 and "lacks the preheader" in message
               and 'preheader: "..."' in fix for path, line, message, fix in found)
    assert any(path == f"{folder}/secnd.md" and "has no step 'secnd'" in message
               and "rename it to second.md" in fix for path, _, message, fix in found)


def test_front_matter_problems_name_their_line(tmp_path: Path) -> None:
    bad = '---\nsubject: "आपका नोट"\ncolour: blue\n---\n' + HINDI_BODY
    sequences_dir, templates = write_content(tmp_path, {
        "first.md": bad, "second.md": HINDI_BODY})
    _, _, problems = check_content(sequences_dir, templates, rules=False)
    by_file = {(p.path.name, p.line): p.message for p in errors(problems)}
    assert "unknown field 'colour'" in by_file[("first.md", 3)]
    assert "no subject lines" in by_file[("second.md", 1)]


def test_a_jinja_error_in_a_locale_body_keeps_the_file_line(tmp_path: Path) -> None:
    body = HINDI_FRONT + "नमस्ते,\n\n{{ nonsense }}\n"
    sequences_dir, templates = write_content(tmp_path, {
        "first.md": body, "second.md": HINDI_FRONT + HINDI_BODY})
    _, _, problems = check_content(sequences_dir, templates, rules=False)
    [problem] = errors(problems)
    assert problem.path.name == "first.md" and "nonsense" in problem.message
    assert problem.line == 9, "the line in the file, front matter included"


def test_validate_prints_the_coverage_table_and_fails_on_a_gap(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sequences_dir, templates = write_content(tmp_path, {"first.md": HINDI_FRONT + HINDI_BODY})
    monkeypatch.setenv("NURTURE_SEQUENCES_DIR", str(sequences_dir))
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(templates))
    assert main(["sequences", "validate"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"sequence\s+en \(default\)\s+hi-IN", out)
    assert re.search(r"probe\s+2/2\s+1/2 MISSING", out)
    assert "hi-IN lacks in probe: second" in out
    assert "en-IN has no texts of its own: its readers get the en texts" in out
    (templates / "emails" / "probe" / "hi-IN" / "second.md").write_text(
        HINDI_FRONT + HINDI_BODY, encoding="utf-8")
    assert main(["sequences", "validate"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"probe\s+2/2\s+2/2\n", out), "printed on success too"
    assert "probe/first [hi-IN]:" in out and "words per sentence" in out


# --- discreet words and readability per locale --------------------------------------------------


def test_python_re_finds_no_word_boundary_in_devanagari_but_the_rule_does() -> None:
    # Why the rule uses `regex`: vowel signs and viramas are marks, not \w, for `re`.
    assert re.search(r"\bरिश्ते\b", "आपके रिश्ते की बात") is None
    pattern = word_pattern(frozenset({"पति", "रिश्ते", "partner", "पार्टनर"}))
    assert pattern is not None
    found = {text: (m.group(0) if (m := pattern.search(text)) else None) for text in (
        "आपके रिश्ते की बात", "लक्ष्मीपति जी आए", "रिश्तेदार आए", "पार्टनरों से", "my partners",
        "partnership")}
    assert found == {"आपके रिश्ते की बात": "रिश्ते", "लक्ष्मीपति जी आए": None, "रिश्तेदार आए": None,
                     "पार्टनरों से": "पार्टनरों", "my partners": "partners", "partnership": None}


HINDI_LOCALE = """
language: {name: हिन्दी (भारत), tag: hi-IN, direction: ltr, fallback: [hi, en-IN, en]}
crisis:
  heading: अगर आपको अभी मदद चाहिए
  text: अगर आप ख़तरे में हैं, तो 112 पर कॉल करें।
  lines: [{name: इमरजेंसी, contact: "112"}]
discreet:
  revealing_words: [रिश्ता, रिश्ते, पार्टनर]
"""


def test_the_locale_word_list_catches_a_revealing_hindi_discreet_subject(tmp_path: Path) -> None:
    revealing = HINDI_FRONT.replace('discreet_subject: "आपके नोट्स"',
                                    'discreet_subject: "आपके रिश्ते के लिए"')
    sequences_dir, templates = write_content(
        tmp_path, {"first.md": revealing + HINDI_BODY, "second.md": HINDI_FRONT + HINDI_BODY},
        locales={"hi-IN.yaml": HINDI_LOCALE})
    sequences, library, problems = check_content(sequences_dir, templates)
    [problem] = errors(problems)
    assert "reveals the topic with 'रिश्ते'" in problem.message
    assert (problem.path.name, problem.line) == ("first.md", 4), "the discreet_subject's line"
    assert library is not None
    assert check_rules(sequences, library, revealing_words=DEFAULT_REVEALING_WORDS) == [], \
        "the English list alone does not know the Hindi word"


def test_hindi_sentences_end_with_the_danda() -> None:
    measure = sentence_measure("यह एक नोट है। इसे पढ़ें! क्या आप तैयार हैं?\n\nनमस्ते", 4)
    assert measure.words_per_sentence == pytest.approx(11 / 4)
    long_words = sentence_measure("मनोवैज्ञानिक बात है।", 4)
    assert long_words.long_word_share == pytest.approx(1 / 3)


def test_readability_can_be_switched_off_for_a_locale(tmp_path: Path) -> None:
    wordy = HINDI_FRONT + "नमस्ते,\n\n" + " ".join(["शब्द"] * 40) + "।\n"
    sequences_dir, templates = write_content(
        tmp_path, {"first.md": wordy, "second.md": HINDI_FRONT + HINDI_BODY},
        locales={"hi-IN.yaml": HINDI_LOCALE})
    sequences, library, _ = check_content(sequences_dir, templates)
    assert library is not None
    [warning] = check_rules(sequences, library)
    assert warning.severity is Severity.WARNING and warning.path.name == "first.md"
    assert "words per sentence" in warning.message
    (templates / "locales" / "hi-IN.yaml").write_text(
        HINDI_LOCALE + "readability: {measure: none}\n", encoding="utf-8")
    sequences, library, _ = check_content(sequences_dir, templates)
    assert library is not None and check_rules(sequences, library) == []


# --- a right-to-left locale ------------------------------------------------------------------


def test_a_right_to_left_locale_sets_dir_and_lang_on_the_email(tmp_path: Path) -> None:
    rtl = HINDI_LOCALE.replace("tag: hi-IN, direction: ltr", "tag: ar-EG, direction: rtl").replace(
        "fallback: [hi, en-IN, en]", "fallback: [en]")
    sequences_dir, templates = write_content(tmp_path, {}, locales={"ar-EG.yaml": rtl})
    # A pseudo right-to-left locale: a locale file and texts of its own, no code.
    folder = templates / "emails" / "probe" / "ar-EG"
    folder.mkdir()
    for key in STEPS:
        (folder / f"{key}.md").write_text(HINDI_FRONT + HINDI_BODY, encoding="utf-8")
    content = load_content(sequences_dir, templates)
    email = render(content.library, dict(content.sequences), "first", "ar-EG")
    assert re.search(r'<html lang="ar-EG" dir="rtl">', email.html)
    assert re.search(r'<div class="card" lang="ar-EG" dir="rtl"', email.html)
    assert "border-right" in email.html
    english = render(content.library, dict(content.sequences), "first", "en")
    assert '<html lang="en" dir="ltr">' in english.html and "border-right" not in english.html


# --- the layouts' own words --------------------------------------------------------------------


def test_the_footer_speaks_the_locale_and_a_missing_word_falls_back_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    words = HINDI_LOCALE + """email:
  settings_before: आप किसी भी समय
  settings_link: ये ईमेल रोक सकते हैं या सेटिंग्स बदल सकते हैं
  settings_between: या एक क्लिक में
  unsubscribe_link: अनसब्सक्राइब
  unsubscribe_after: कर सकते हैं।
  sent_to_before: यह ईमेल
  sent_to_after: " पर भेजा गया था।"
  text_settings: "ये ईमेल रोकें या सेटिंग्स बदलें:"
"""
    caplog.set_level(logging.INFO, logger="nurture.rendering.locales")
    content = load_content(*write_content(tmp_path, locales={"hi-IN.yaml": words}))
    email = render(content.library, dict(content.sequences), "first", "hi-IN")
    shown = re.sub(r"<[^>]+>", "", email.html)
    assert ("आप किसी भी समय ये ईमेल रोक सकते हैं या सेटिंग्स बदल सकते हैं या एक क्लिक में "
            "अनसब्सक्राइब कर सकते हैं।") in shown
    assert re.search(r'<a href="https://example.org/p/t"[^>]*>ये ईमेल रोक', email.html)
    assert re.search(r'<a href="https://example.org/u/t"[^>]*>अनसब्सक्राइब</a>', email.html)
    assert "यह ईमेल reader@example.org पर भेजा गया था।" in shown
    assert f"ये ईमेल रोकें या सेटिंग्स बदलें: {LINKS.preferences_url}" in email.text
    assert f"Unsubscribe with one click: {LINKS.unsubscribe_url}" in email.text, "not given: English"
    fallen = {(r.locale, r.field) for r in caplog.records  # type: ignore[attr-defined]
              if r.name == "nurture.rendering.locales"}
    assert ("hi-IN", "email.text_unsubscribe") in fallen
    assert ("hi-IN", "email.settings_link") not in fallen
    assert not any(locale == "en-IN" for locale, _ in fallen), "en-IN is English: no fallback"
    english = render(content.library, dict(content.sequences), "first", "en-IN", first_name="Sam")
    assert "This email was sent to reader@example.org." in english.html


def test_an_unknown_footer_word_is_an_error_at_its_line(tmp_path: Path) -> None:
    words = HINDI_LOCALE + "email:\n  goodbye: अलविदा\n"
    sequences_dir, templates = write_content(tmp_path, locales={"hi-IN.yaml": words})
    _, _, problems = check_content(sequences_dir, templates, rules=False)
    [problem] = errors(problems)
    assert problem.path.name == "hi-IN.yaml" and "email.goodbye" in problem.message
    assert problem.line == HINDI_LOCALE.count("\n") + 2


def test_the_email_is_marked_in_the_language_of_its_body(tmp_path: Path) -> None:
    # hi-IN has a locale file but no texts for this sequence: the body is English, so is lang=.
    sequences_dir, templates = write_content(tmp_path, {}, locales={"hi-IN.yaml": HINDI_LOCALE})
    content = load_content(sequences_dir, templates)
    email = render(content.library, dict(content.sequences), "first", "hi-IN")
    assert '<html lang="en" dir="ltr">' in email.html
    assert "अगर आपको अभी मदद चाहिए" in email.html, "the crisis block stays the reader's"
    translated = load_content(*write_content(tmp_path / "2", locales={"hi-IN.yaml": HINDI_LOCALE}))
    hindi = render(translated.library, dict(translated.sequences), "first", "hi-IN")
    assert '<html lang="hi-IN" dir="ltr">' in hindi.html


def test_texts_for_a_sequence_that_is_not_there_are_a_warning(tmp_path: Path) -> None:
    sequences_dir, templates = write_content(tmp_path)
    stray = templates / "emails" / "nosuch" / "hi-IN"
    stray.mkdir(parents=True)
    (stray / "welcome.md").write_text(HINDI_FRONT + HINDI_BODY, encoding="utf-8")
    _, _, problems = check_content(sequences_dir, templates, rules=False)
    [problem] = problems
    assert problem.severity is Severity.WARNING and problem.path == stray
    assert "no sequence 'nosuch'" in problem.message and "probe" in problem.fix


def test_at_run_time_a_gap_is_a_warning_and_its_readers_get_the_default(tmp_path: Path) -> None:
    sequences_dir, templates = write_content(tmp_path, {"first.md": HINDI_FRONT + HINDI_BODY})
    content = load_content(sequences_dir, templates)
    [gap] = content.warnings
    assert "hi-IN lacks step 'second'" in gap.message
    email = render(content.library, dict(content.sequences), "second", "hi-IN")
    assert email.subject == "Your second note"
