"""How easily a step's text reads: syllables by pyphen, the Flesch reading ease of a text, and the
report of every step's score that `nurture sequences validate` prints."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import pyphen  # type: ignore[import-untyped]

from nurture.content.samples import StepRenders, body_text, footer_separator, sample_renders
from nurture.domain.model import Sequence
from nurture.rendering.library import TemplateLibrary

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


def step_score(renders: StepRenders, separator: str | None) -> float | None:
    """The lowest reading ease of the step's sample emails' bodies; None when none rendered."""
    scores = [flesch_reading_ease(body_text(email.text, separator)) for _, email in renders.emails]
    return min(scores) if scores else None


def readability_report(sequences: Mapping[str, Sequence], library: TemplateLibrary) -> list[StepReadability]:
    """The Flesch reading ease of every step that renders, in sequence-key and step order."""
    separator = footer_separator(library)
    report: list[StepReadability] = []
    for sequence, step, renders in sample_renders(sequences, library):
        score = step_score(renders, separator) if renders.failure is None else None
        if score is not None:
            report.append(StepReadability(sequence.key, step.key, round(score, 1)))
    return report
