"""How easily a step's text reads, per locale: for English, the Flesch reading ease (syllables by
pyphen); for other languages, where Flesch's constants mean nothing, the average words per
sentence and the share of long words; and the report `nurture sequences validate` prints."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import pyphen  # type: ignore[import-untyped]
import regex

from nurture.content.samples import StepRenders, body_text, footer_separator, sample_renders
from nurture.domain.model import Sequence
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import ReadabilityRule

_URL: Final = re.compile(r"\(?\b(?:https?://|mailto:)[^\s)]*\)?")
_WORD: Final = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_SENTENCE_END: Final = re.compile(r"[.!?]+(?=[\"'”’)\]]*(?:\s|$))")
_LIST_MARKER: Final = re.compile(r"(?:[-*+]|\d{1,3}[.)])\s+")
# Any script: letters with their combining marks (a Devanagari vowel sign or virama is a mark).
_ANY_WORD: Final = regex.compile(r"\p{L}[\p{L}\p{M}\u200c\u200d]*(?:['’-]\p{L}[\p{L}\p{M}]*)*")
# The danda (।) and double danda (॥) end Hindi sentences, as the full stop ends English ones.
_ANY_SENTENCE_END: Final = regex.compile(r"[.!?।॥]+(?=[\"'”’)\]]*(?:\s|$))")
_CLOSERS: Final = (".", "!", "?", "।", "॥")


@dataclass(frozen=True)
class StepReadability:
    sequence: str
    step: str
    score: float
    """Flesch reading ease (measure "flesch"), or average words per sentence ("sentences"), of
    the body of the text part; the worst over the personas rendered."""
    locale: str = "en"
    """The locale of the texts measured."""
    measure: str = "flesch"
    long_word_share: float = 0.0
    """For "sentences": the share of words of the rule's long-word length or more."""
    passes: bool = True

    def describe(self) -> str:
        if self.measure == "flesch":
            return f"Flesch reading ease {self.score:.0f}"
        return (f"{self.score:.1f} words per sentence, {self.long_word_share:.0%} long words")


@dataclass(frozen=True)
class SentenceMeasure:
    words_per_sentence: float
    long_word_share: float


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


def sentence_measure(text: str, long_word_graphemes: int) -> SentenceMeasure:
    """Average words per sentence, and the share of words with `long_word_graphemes` grapheme
    clusters or more, in any script written with spaces; headings and list items without
    closing punctuation count as sentences, as in flesch_reading_ease."""
    words = sentences = long_words = 0
    for unit in _units(_URL.sub("", text)):
        unit_words = _ANY_WORD.findall(unit)
        if not unit_words:
            continue
        words += len(unit_words)
        long_words += sum(1 for w in unit_words if len(regex.findall(r"\X", w)) >= long_word_graphemes)
        closed = unit.rstrip("\"'”’)] ").endswith(_CLOSERS)
        sentences += len(_ANY_SENTENCE_END.findall(unit)) + (0 if closed else 1)
    if words == 0:
        return SentenceMeasure(0.0, 0.0)
    return SentenceMeasure(words / sentences, long_words / words)


def measure_texts(texts: list[str], rule: ReadabilityRule, *, sequence: str = "", step: str = "",
                  locale: str = "en", flesch_floor: float | None = None) -> StepReadability | None:
    """The worst reading of the texts under the rule; None when there are none or the rule's
    measure is "none"."""
    if not texts or rule.measure == "none":
        return None
    if rule.measure == "flesch":
        score = min(flesch_reading_ease(text) for text in texts)
        floor = rule.flesch_floor if flesch_floor is None else flesch_floor
        return StepReadability(sequence, step, round(score, 1), locale, "flesch",
                               passes=score >= floor)
    measures = [sentence_measure(text, rule.long_word_graphemes) for text in texts]
    length = max(m.words_per_sentence for m in measures)
    share = max(m.long_word_share for m in measures)
    passes = length <= rule.max_words_per_sentence and share <= rule.max_long_word_share
    return StepReadability(sequence, step, round(length, 1), locale, "sentences",
                           round(share, 3), passes)


def text_locale_rule(library: TemplateLibrary, locale: str) -> ReadabilityRule:
    """The rule for texts in `locale`: its locale file's, or, without a file of its language,
    Flesch for English and sentence length for any other language."""
    data = library.locale_data(locale)
    if data.key.split("-", 1)[0].lower() == locale.split("-", 1)[0].lower():
        return data.readability
    english = locale.split("-", 1)[0].lower() == "en"
    return ReadabilityRule(measure="flesch" if english else "sentences")


def step_readings(library: TemplateLibrary, sequence: Sequence, step_key: str,
                  renders: StepRenders, separator: str | None,
                  flesch_floor: float | None = None) -> list[StepReadability]:
    """One reading per locale of texts among the step's sample emails (the default's first)."""
    by_locale: dict[str, list[str]] = {}
    for persona, email in renders.emails:
        locale = library.translations.text_locale(library.locales.chain(persona.locale))
        by_locale.setdefault(locale, []).append(body_text(email.text, separator))
    readings = [measure_texts(texts, text_locale_rule(library, locale), sequence=sequence.key,
                              step=step_key, locale=locale, flesch_floor=flesch_floor)
                for locale, texts in by_locale.items()]
    return [reading for reading in readings if reading is not None]


def readability_report(sequences: Mapping[str, Sequence], library: TemplateLibrary) -> list[StepReadability]:
    """Every step's reading per locale of texts, in sequence-key and step order."""
    separator = footer_separator(library)
    report: list[StepReadability] = []
    for sequence, step, renders in sample_renders(sequences, library):
        if renders.failure is None:
            report += step_readings(library, sequence, step.key, renders, separator)
    return report
