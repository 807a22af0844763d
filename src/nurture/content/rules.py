"""Rules on rendered content that templates alone cannot show: footer, discreet headers, early asks to
book, and a readability figure; each problem points at the step's line in its sequence file."""

from __future__ import annotations

import dataclasses
import functools
import html
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import pyphen  # type: ignore[import-untyped]

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from nurture.rendering.vocabulary import TEXT_LAYOUT

# Words that would tell someone glancing at an inbox what these emails are about. Matched
# case-insensitively as whole words, with plural and possessive endings.
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
# The step that may ask people to book; steps before it in the same sequence may not.
CONSULT_STEP: Final = "consult-invitation"
DEFAULT_BOOKING_PATTERNS: Final[tuple[str, ...]] = (
    r"book(?:s|ed|ings?)?",
    r"schedul(?:e|es|ed|ing) (?:a|an|the|your|one) (?:free )?"
    r"(?:call|consult|consultation|session|appointment)",
    r"sign(?:s|ed|ing)? up for (?:a|an|the|one) (?:free )?(?:call|consult|consultation|session)",
    r"make an appointment",
)

# Fixed values for the rendering the rules inspect; they only need to be recognisable afterwards.
_RULE_LINKS: Final = Links(
    unsubscribe_url="https://rules.example.org/unsubscribe/check",
    preferences_url="https://rules.example.org/preferences/check",
    action_url="https://rules.example.org/action/check",
    booked_url="https://rules.example.org/booked/check",
)
_RULE_BRAND: Final = Brand(
    sender="Nurture <hello@example.org>",
    discreet_sender_name="Notes",
    postal_address="Rules Check, 1 Example Street, Example Town 10001",
    base_url="https://rules.example.org",
)
_RULE_EMAIL: Final = "reader@example.org"
_RULE_NAME: Final = "Sam"
_FALLBACK_LOCALE: Final = "en"

_BODY_TAG: Final = re.compile(r"\{\{-?\s*body\s*-?\}\}")
_URL: Final = re.compile(r"\(?\b(?:https?://|mailto:)[^\s)]*\)?")
_WORD: Final = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_SENTENCE_END: Final = re.compile(r"[.!?]+(?=[\"'”’)\]]*(?:\s|$))")
_LIST_MARKER: Final = re.compile(r"(?:[-*+]|\d{1,3}[.)])\s+")


@dataclass(frozen=True)
class StepReadability:
    sequence: str
    step: str
    score: float
    """Flesch reading ease of the body of the text part; the lowest over the personas rendered."""


@dataclass(frozen=True)
class _Persona:
    hesitations: frozenset[str]
    discreet: bool
    locale: str
    first_name: str | None

    def describe(self) -> str:
        reasons = ",".join(sorted(self.hesitations)) if self.hesitations else "none"
        name = "with a first name" if self.first_name else "without a first name"
        mode = "discreet" if self.discreet else "not discreet"
        return f"hesitations {reasons}, {mode}, locale {self.locale}, {name}"


@dataclass(frozen=True)
class _StepRenders:
    emails: tuple[tuple[_Persona, RenderedEmail], ...]
    failure: str | None


# ---------------------------------------------------------------------------------------------
# Readability


@functools.cache
def _dictionary() -> pyphen.Pyphen:
    return pyphen.Pyphen(lang="en_US")


@functools.lru_cache(maxsize=8192)
def syllables(word: str) -> int:
    """Syllables of one word as pyphen's hyphenation points plus one, summed over hyphenated parts."""
    count = 0
    for part in word.lower().replace("’", "'").split("-"):
        part = part.replace("'", "")
        if part:
            count += len(_dictionary().positions(part)) + 1
    return count


def _units(text: str) -> Iterator[str]:
    """Paragraphs and list items, with wrapped lines joined again."""
    for paragraph in re.split(r"\n[ \t]*\n", text):
        current: list[str] = []
        for line in paragraph.split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            marker = _LIST_MARKER.match(stripped)
            if marker and current:
                yield " ".join(current)
                current = []
            current.append(stripped[marker.end() :] if marker else stripped)
        if current:
            yield " ".join(current)


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 * words/sentences - 84.6 * syllables/words; URLs are ignored.

    A heading, greeting or list item without closing punctuation counts as a sentence of its own,
    since a reader takes it in as one. A text without words scores 0.
    """
    words = 0
    sentences = 0
    total_syllables = 0
    for unit in _units(_URL.sub("", text)):
        unit_words = _WORD.findall(unit)
        if not unit_words:
            continue
        words += len(unit_words)
        total_syllables += sum(syllables(word) for word in unit_words)
        ends = len(_SENTENCE_END.findall(unit))
        closed = unit.rstrip("\"'”’)] ").endswith((".", "!", "?"))
        sentences += ends + (0 if closed else 1)
    if words == 0:
        return 0.0
    return 206.835 - 1.015 * (words / sentences) - 84.6 * (total_syllables / words)


# ---------------------------------------------------------------------------------------------
# Rendering for the rules


def _locales(library: TemplateLibrary) -> list[str]:
    found = {path.stem for path in (library.templates_dir / "locales").glob("*.yaml")}
    return sorted(found | {_FALLBACK_LOCALE})


def _personas(library: TemplateLibrary) -> list[_Persona]:
    """Few, because each distinct email costs a CSS inlining: no reason (the general sections) and
    every reason (every section and combination), in both modes; a nameless discreet reader (the
    other branch of `{% if first_name %}`); and each further locale's footer and resources."""
    personas = [
        _Persona(reasons, discreet, _FALLBACK_LOCALE, _RULE_NAME)
        for reasons, discreet in itertools.product((frozenset(), KNOWN_REASONS), (False, True))
    ]
    personas.append(_Persona(frozenset(), True, _FALLBACK_LOCALE, None))
    personas += [
        _Persona(frozenset(), False, locale, _RULE_NAME)
        for locale in _locales(library)
        if locale != _FALLBACK_LOCALE
    ]
    return personas


def _render_step(
    sequence: Sequence, step: Step, library: TemplateLibrary, personas: list[_Persona], links: Links
) -> _StepRenders:
    emails: list[tuple[_Persona, RenderedEmail]] = []
    for persona in personas:
        profile = Profile(hesitations=persona.hesitations, discreet=persona.discreet, locale=persona.locale)
        recipient = Recipient(email=_RULE_EMAIL, first_name=persona.first_name, profile=profile)
        # Any failure is a content problem to report, never a crash of the check.
        try:
            emails.append((persona, library.render(sequence, step, recipient, links, _RULE_BRAND)))
        except Exception as error:
            return _StepRenders(tuple(emails), f"{type(error).__name__}: {error} ({persona.describe()})")
    return _StepRenders(tuple(emails), None)


def _renders(
    sequences: Mapping[str, Sequence], library: TemplateLibrary
) -> Iterator[tuple[Sequence, Step, _StepRenders]]:
    personas = _personas(library)
    links = _RULE_LINKS
    for key in sorted(sequences):
        sequence = sequences[key]
        for step in sequence.steps:
            yield sequence, step, _render_step(sequence, step, library, personas, links)


def _footer_separator(library: TemplateLibrary) -> str | None:
    """The first fixed line after {{ body }} in the text layout: where the footer starts."""
    try:
        lines = (library.templates_dir / TEXT_LAYOUT).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for index, line in enumerate(lines):
        if _BODY_TAG.search(line):
            for after in lines[index + 1 :]:
                if after.strip():
                    return None if "{" in after else after.strip()
    return None


def body_text(text: str, separator: str | None) -> str:
    """The text part above the layout's footer separator (all of it when there is none)."""
    if separator is None:
        return text
    cut = text.rfind("\n" + separator + "\n")
    return text if cut < 0 else text[:cut]


def _step_score(renders: _StepRenders, separator: str | None) -> float | None:
    scores = [flesch_reading_ease(body_text(email.text, separator)) for _, email in renders.emails]
    return min(scores) if scores else None


def readability_report(sequences: Mapping[str, Sequence], library: TemplateLibrary) -> list[StepReadability]:
    """The Flesch reading ease of every step that renders, in sequence-key and step order."""
    separator = _footer_separator(library)
    report: list[StepReadability] = []
    for sequence, step, renders in _renders(sequences, library):
        score = _step_score(renders, separator) if renders.failure is None else None
        if score is not None:
            report.append(StepReadability(sequence.key, step.key, round(score, 1)))
    return report


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


def _footer_needs(library: TemplateLibrary, persona: _Persona, links: Links) -> dict[str, str]:
    crisis = library.locale_data(persona.locale).crisis
    return {
        "the unsubscribe link": links.unsubscribe_url,
        "the pause / preferences link": links.preferences_url,
        "the postal address": _RULE_BRAND.postal_address,
        "the crisis heading": crisis.heading,
    }


def _word_pattern(words: frozenset[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z])({alternatives})(?:s|es|'s|’s)?(?![A-Za-z])", re.IGNORECASE)


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

    def add(self, kind: str, message: str, fix: str, severity: Severity = Severity.ERROR) -> None:
        problem = ContentProblem(self.sequence.source, self.step.line, message, fix, severity)
        self.found.setdefault(kind, problem)


@dataclass(frozen=True)
class _Rules:
    revealing: re.Pattern[str] | None
    booking: re.Pattern[str]
    separator: str | None
    links: Links
    readability_floor: float


def _check_step(
    rules: _Rules, library: TemplateLibrary, early: bool, renders: _StepRenders, out: _StepProblems
) -> None:
    step = out.step
    if step.discreet_subject is None:
        out.add(
            "discreet_subject",
            f"step '{step.key}' has no discreet_subject",
            'add `discreet_subject:` with neutral words, e.g. "Your note for this week"',
        )
    for persona, email in renders.emails:
        for what, needle in _footer_needs(library, persona, rules.links).items():
            for part, text, is_html in (("HTML", email.html, True), ("text", email.text, False)):
                if not _contains(text, needle, is_html=is_html):
                    out.add(
                        f"footer {part} {what} {persona.locale}",
                        f"step '{step.key}': the {part} part lacks {what} (locale {persona.locale})",
                        "keep the footer of templates/layouts/email.html and email.txt, and the "
                        "crisis heading in the locale file",
                    )
        if persona.discreet and rules.revealing is not None:
            for field, value in (("subject", email.subject), ("preheader", email.preheader)):
                match = rules.revealing.search(value)
                if match:
                    out.add(
                        f"revealing {field} {match.group(0).lower()}",
                        f"step '{step.key}': the discreet {field} reveals the topic with "
                        f"'{match.group(0)}': \"{value}\"",
                        f"write a `discreet_{field}:` that names neither therapy nor the "
                        'relationship, e.g. "A note for this week"',
                    )
        if early:
            match = rules.booking.search(body_text(email.text, rules.separator))
            if match:
                out.add(
                    f"booking {match.group(0).lower()}",
                    f"step '{step.key}' comes before '{CONSULT_STEP}' but asks to book: "
                    f"'{match.group(0)}' ({persona.describe()})",
                    f'leave booking to the {CONSULT_STEP} step; use words such as "talk", '
                    '"try" or "look for someone" here',
                )
    if renders.failure is not None:
        out.add(
            "render",
            f"step '{step.key}' could not be rendered to check the content rules: {renders.failure}",
            "correct the template errors reported for this step",
        )
        return
    score = _step_score(renders, rules.separator)
    if score is not None and score < rules.readability_floor:
        out.add(
            "readability",
            f"step '{step.key}': the text reads with difficulty (Flesch reading ease {score:.1f}, "
            f"below {rules.readability_floor:g})",
            "use shorter sentences and everyday words",
            Severity.WARNING,
        )


def check_rules(
    sequences: Mapping[str, Sequence],
    library: TemplateLibrary,
    *,
    revealing_words: frozenset[str] = DEFAULT_REVEALING_WORDS,
    readability_floor: float = DEFAULT_READABILITY_FLOOR,
    booking_patterns: tuple[str, ...] = DEFAULT_BOOKING_PATTERNS,
) -> list[ContentProblem]:
    """Render every step for a set of personas and check the rules; problems point at the step line.

    Errors: a missing footer part (unsubscribe and pause links, postal address, crisis heading) in
    either part; a missing discreet_subject; a revealing word in a discreet subject or preheader; a
    step before consult-invitation that asks to book; a step that cannot be rendered. Warning: a
    body whose Flesch reading ease is below `readability_floor`.
    """
    rules = _Rules(
        revealing=_word_pattern(revealing_words),
        booking=_booking_pattern(booking_patterns),
        separator=_footer_separator(library),
        links=_RULE_LINKS,
        readability_floor=readability_floor,
    )
    early_steps = {key: _steps_before_consult(sequence) for key, sequence in sequences.items()}
    problems: list[ContentProblem] = []
    for sequence, step, renders in _renders(sequences, library):
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
    "StepReadability",
    "body_text",
    "check_rules",
    "flesch_reading_ease",
    "readability_report",
    "syllables",
]
