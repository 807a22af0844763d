"""Rules on rendered content that templates alone cannot show: footer, discreet headers, early asks to
book, and a readability floor; each problem points at the step's line in its sequence file."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import regex

from nurture.content.readability import step_readings, text_locale_rule
from nurture.content.samples import (
    SAMPLE_BRAND,
    SAMPLE_LINKS,
    Persona,
    StepRenders,
    body_text,
    footer_separator,
    sample_renders,
)
from nurture.domain.model import Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Links, RenderedEmail

# Words that would tell someone glancing at an inbox what these emails are about. Matched
# case-insensitively as whole words, with plural and possessive endings. Every locale's list
# (`discreet: {revealing_words: [...]}` in templates/locales/*.yaml) adds to this one, since a
# text may fall back to English.
DEFAULT_REVEALING_WORDS: Final[frozenset[str]] = frozenset(
    {
        "therapy",
        "therapies",
        "therapist",
        "therapeutic",
        "psychotherapy",
        "psychotherapist",
        "psychologist",
        "counselling",
        "counseling",
        "counsellor",
        "counselor",
        "couples",
        "relationship",
        "partner",
        "marriage",
        "marital",
        "married",
        "spouse",
        "husband",
        "wife",
        "wives",
        "boyfriend",
        "girlfriend",
        "divorce",
        "abuse",
        "abusive",
    }
)
DEFAULT_READABILITY_FLOOR: Final = 60.0
# How much of a discreet text part a glance at a screen or a notification shows: it names nothing.
DISCREET_OPENING_CHARS: Final = 300
# The step that may ask people to book; steps before it in the same sequence may not.
CONSULT_STEP: Final = "consult-invitation"
_URL: Final = re.compile(r"https?://\S+")
_DISCREET_IF: Final = re.compile(r"\{%-?\s*if\s+discreet\b")
# What runs or loads on its own: mail clients strip it, filters score it as spam, and a preview of
# the email must never be able to run it.
_ACTIVE: Final = re.compile(
    r"<\s*(script|iframe|object|embed|form|frame|frameset|applet|base|meta\s+http-equiv)\b"
    r"|\s(on[a-z]+)\s*=|(javascript|vbscript)\s*:", re.IGNORECASE)
DEFAULT_BOOKING_PATTERNS: Final[tuple[str, ...]] = (
    r"book(?:s|ed|ings?)?",
    r"schedul(?:e|es|ed|ing) (?:a|an|the|your|one) (?:free )?"
    r"(?:call|consult|consultation|session|appointment)",
    r"sign(?:s|ed|ing)? up for (?:a|an|the|one) (?:free )?(?:call|consult|consultation|session)",
    r"make an appointment",
)


# ---------------------------------------------------------------------------------------------
# The rules


def _flat(value: str) -> str:
    return " ".join(value.split())


def _contains(part: str, needle: str, *, is_html: bool) -> bool:
    # The text part is wrapped and the HTML escaped, so compare with whitespace collapsed.
    flat = _flat(part)
    candidates = {_flat(needle)}
    if is_html:
        candidates |= {_flat(html.escape(needle, quote=False)), _flat(html.escape(needle))}
    return any(candidate in flat for candidate in candidates)


def _footer_needs(library: TemplateLibrary, persona: Persona, links: Links) -> dict[str, str]:
    crisis = library.locale_data(persona.locale).crisis
    needs = {
        "the unsubscribe link": links.unsubscribe_url,
        "the pause / preferences link": links.preferences_url,
        "the postal address": SAMPLE_BRAND.postal_address,
        "the crisis heading": crisis.heading,
    }
    if crisis.directory is not None:
        needs["the helpline directory link"] = crisis.directory.url
    if crisis.framing.strip():
        needs["the framing (what these notes are and are not)"] = crisis.framing
    return needs


# A word is letters with their combining marks and joiners: Devanagari vowel signs and viramas are
# marks, which `re`'s \w and \b do not count as part of a word (a test shows it).
_LETTER: Final = r"[\p{L}\p{M}\p{N}\u200c\u200d]"
# English plurals and possessives; the Hindi plural and oblique endings of nouns.
_ENDINGS: Final = r"(?:s|es|'s|’s|ों|ें|ियों|ियाँ|ियां|ओं|एँ|एं)?"


def word_pattern(words: frozenset[str]) -> regex.Pattern[str] | None:
    """Any of the words as a whole word, in any script, with its plural endings."""
    if not words:
        return None
    alternatives = "|".join(regex.escape(word) for word in sorted(words, key=len, reverse=True))
    return regex.compile(rf"(?<!{_LETTER})({alternatives}){_ENDINGS}(?!{_LETTER})",
                         regex.IGNORECASE | regex.VERSION1)


def _booking_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z])(?:" + "|".join(patterns) + r")(?![A-Za-z])", re.IGNORECASE)


def _steps_before_consult(sequence: Sequence) -> frozenset[str]:
    keys = [step.key for step in sequence.steps]
    if CONSULT_STEP not in keys:
        return frozenset()
    return frozenset(keys[: keys.index(CONSULT_STEP)])


@dataclass
class _StepProblems:
    """Problems of one step, one per kind rather than one per persona that shows it."""

    sequence: Sequence
    step: Step
    found: dict[str, ContentProblem] = dataclasses.field(default_factory=dict)

    def add(self, kind: str, message: str, fix: str, severity: Severity = Severity.ERROR,
            where: tuple[Path, int] | None = None) -> None:
        path, line = where or (self.sequence.source, self.step.line)
        self.found.setdefault(kind, ContentProblem(path, line, message, fix, severity))


@dataclass
class _Rules:
    library: TemplateLibrary
    words: frozenset[str] | None
    """The revealing words for every locale; None: the default list and each locale's own."""
    booking: re.Pattern[str]
    separator: str | None
    links: Links
    readability_floor: float | None
    patterns: dict[str, regex.Pattern[str] | None] = dataclasses.field(default_factory=dict)

    def revealing(self, locale: str) -> regex.Pattern[str] | None:
        if locale not in self.patterns:
            words = self.words
            if words is None:
                words = DEFAULT_REVEALING_WORDS | self.library.locales.revealing_words(locale)
            self.patterns[locale] = word_pattern(words)
        return self.patterns[locale]


def _check_footer(library: TemplateLibrary, links: Links, persona: Persona, email: RenderedEmail,
                  out: _StepProblems) -> None:
    for what, needle in _footer_needs(library, persona, links).items():
        for part, text, is_html in (("HTML", email.html, True), ("text", email.text, False)):
            if not _contains(text, needle, is_html=is_html):
                out.add(
                    f"footer {part} {what} {persona.locale}",
                    f"step '{out.step.key}': the {part} part lacks {what} (locale {persona.locale})",
                    "keep the footer of templates/layouts/email.html and email.txt, and the "
                    "crisis heading in the locale file",
                )


def _check_discreet_words(revealing: regex.Pattern[str], library: TemplateLibrary,
                          persona: Persona, email: RenderedEmail, out: _StepProblems) -> None:
    text = library.translations.get(out.sequence.key, out.step.key, persona.locale)
    for field, value in (("subject", email.subject), ("preheader", email.preheader)):
        match = revealing.search(value)
        if match:
            where = (text.path, text.lines.get(f"discreet_{field}", 1)) if text else None
            out.add(
                f"revealing {field} {match.group(0).lower()}",
                f"step '{out.step.key}': the discreet {field} reveals the topic with "
                f"'{match.group(0)}': \"{value}\"",
                f"write a `discreet_{field}:` that names neither therapy nor the "
                'relationship, e.g. "A note for this week"',
                where=where,
            )


def _discreet_block(library: TemplateLibrary, sequence: Sequence, step: Step,
                    locale: str) -> tuple[Path, int]:
    """The body template and the line of its first `{% if discreet %}` (1 when it has none)."""
    template = library.localize(sequence, step, locale).step.template
    path = library.templates_dir / "emails" / template
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return path, 1
    found = (number for number, line in enumerate(lines, start=1) if _DISCREET_IF.search(line))
    return path, next(found, 1)


def _check_discreet_opening(rules: _Rules, library: TemplateLibrary, persona: Persona,
                            email: RenderedEmail, out: _StepProblems) -> None:
    # The body's opening: a short body may end sooner, and the crisis footer must name its lines.
    opening = body_text(email.text, rules.separator)[:DISCREET_OPENING_CHARS]
    revealing = rules.revealing(persona.locale)
    match = revealing.search(opening) if revealing is not None else None
    if match:
        word = match.group(0)
        out.add(
            f"revealing opening {word.lower()}",
            f"step '{out.step.key}': the discreet text part names '{word}' in its first "
            f"{DISCREET_OPENING_CHARS} characters ({persona.describe()})",
            "open the discreet version with at least two neutral sentences in the "
            "{% if discreet %} block at the top of the template, so that what a glance shows names "
            "neither therapy nor the relationship",
            where=_discreet_block(library, out.sequence, out.step, persona.locale),
        )


def _check_active_html(email: RenderedEmail, out: _StepProblems) -> None:
    match = _ACTIVE.search(email.html)
    if match:
        found = (match.group(1) and f"<{match.group(1)}>") or match.group(2) \
            or f"a {match.group(3)}: link"
        out.add(
            f"active {found.lower()}",
            f"step '{out.step.key}': the HTML holds {found}, which an email must not: mail "
            "programs drop it and spam filters count it against the sender",
            "remove it from the step's template or the layout; an email is text, links and "
            "images",
        )


def _check_early_booking(rules: _Rules, persona: Persona, email: RenderedEmail, out: _StepProblems) -> None:
    # Addresses are not words a reader takes as an ask: a quiet link may end in /booked/<token>.
    words = _URL.sub("", body_text(email.text, rules.separator))
    match = rules.booking.search(words)
    if match:
        out.add(
            f"booking {match.group(0).lower()}",
            f"step '{out.step.key}' comes before '{CONSULT_STEP}' but asks to book: "
            f"'{match.group(0)}' ({persona.describe()})",
            f'leave booking to the {CONSULT_STEP} step; use words such as "talk", '
            '"try" or "look for someone" here',
        )


def _check_step(
    rules: _Rules, library: TemplateLibrary, early: bool, renders: StepRenders, out: _StepProblems
) -> None:
    step = out.step
    if step.discreet_subject is None:
        out.add(
            "discreet_subject",
            f"step '{step.key}' has no discreet_subject",
            'add `discreet_subject:` with neutral words, e.g. "Your note for this week"',
        )
    for persona, email in renders.emails:
        _check_footer(library, rules.links, persona, email, out)
        _check_active_html(email, out)
        revealing = rules.revealing(persona.locale)
        if persona.discreet and revealing is not None:
            _check_discreet_words(revealing, library, persona, email, out)
            _check_discreet_opening(rules, library, persona, email, out)
        if early:
            _check_early_booking(rules, persona, email, out)
    if renders.failure is not None:
        out.add(
            "render",
            f"step '{step.key}' could not be rendered to check the content rules: {renders.failure}",
            "correct the template errors reported for this step",
        )
        return
    for reading in step_readings(library, out.sequence, step.key, renders, rules.separator,
                                 rules.readability_floor):
        if reading.passes:
            continue
        rule = text_locale_rule(library, reading.locale)
        limit = (f"below {rules.readability_floor or rule.flesch_floor:g}"
                 if reading.measure == "flesch" else
                 f"limits {rule.max_words_per_sentence:g} words per sentence and "
                 f"{rule.max_long_word_share:.0%} long words")
        where = _text_place(library, out.sequence, step, reading.locale)
        out.add(
            f"readability {reading.locale}",
            f"step '{step.key}': the {reading.locale} text reads with difficulty "
            f"({reading.describe()}; {limit})",
            "use shorter sentences and everyday words",
            Severity.WARNING,
            where=where,
        )


def _text_place(library: TemplateLibrary, sequence: Sequence, step: Step, locale: str
                ) -> tuple[Path, int] | None:
    """The locale's own file for the step, when the texts read there are not the default's."""
    text = library.translations.get(sequence.key, step.key, locale)
    return (text.path, 1) if text is not None else None


def check_rules(
    sequences: Mapping[str, Sequence],
    library: TemplateLibrary,
    *,
    revealing_words: frozenset[str] | None = None,
    readability_floor: float | None = None,
    booking_patterns: tuple[str, ...] = DEFAULT_BOOKING_PATTERNS,
) -> list[ContentProblem]:
    """Render every step for a set of personas and check the rules; problems point at the step line.

    Errors: a missing footer part (unsubscribe and pause links, postal address, crisis heading, and
    the locale's helpline directory and framing when it has them) in either part; a missing
    discreet_subject; a revealing word in a discreet subject, preheader, or the first 300 characters
    of a discreet text part; a step before consult-invitation that asks to book; a step that cannot
    be rendered. Warning: a body that reads with difficulty by its locale's measure (English:
    Flesch reading ease below the locale's floor, or `readability_floor` when given).
    """
    rules = _Rules(
        library=library,
        words=revealing_words,
        booking=_booking_pattern(booking_patterns),
        separator=footer_separator(library),
        links=SAMPLE_LINKS,
        readability_floor=readability_floor,
    )
    early_steps = {key: _steps_before_consult(sequence) for key, sequence in sequences.items()}
    problems: list[ContentProblem] = []
    for sequence, step, renders in sample_renders(sequences, library):
        out = _StepProblems(sequence, step)
        early = step.key in early_steps.get(sequence.key, frozenset())
        _check_step(rules, library, early, renders, out)
        problems.extend(out.found.values())
    return problems


__all__ = [
    "CONSULT_STEP",
    "DEFAULT_BOOKING_PATTERNS",
    "DEFAULT_READABILITY_FLOOR",
    "DEFAULT_REVEALING_WORDS",
    "DISCREET_OPENING_CHARS",
    "check_rules",
]
