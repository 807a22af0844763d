"""Per-locale email texts: a step's body and subject lines written for one locale, in
templates/emails/<sequence>/<locale>/<step>.md with the subject lines as front matter, and the
choice, field by field along the locale's fallback chain, of the text a reader gets."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nurture.domain.model import Sequence, Step

log = logging.getLogger(__name__)

DEFAULT_TEXT_LOCALE: Final = "en"
"""The locale of the default texts: templates/emails/<sequence>/<step>.md and sequences/*.yaml."""
SUBJECT_FIELDS: Final = ("subject", "preheader", "discreet_subject", "discreet_preheader")
LOCALE_FOLDER: Final = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_FENCE: Final = re.compile(r"---[ \t]*\r?\n?")


def front_matter_lines(source: str) -> int:
    """How many lines the front matter takes at the top of `source` (both `---` lines
    included); 0 when there is none or it is never closed."""
    lines = source.split("\n")
    if not lines or not _FENCE.fullmatch(lines[0] + "\n"):
        return 0
    for index, line in enumerate(lines[1:], start=1):
        if _FENCE.fullmatch(line.rstrip("\r") + "\n"):
            return index + 1
    return 0


def without_front_matter(source: str) -> str:
    """The body template: the front matter becomes a Jinja comment of as many lines, so that
    what Jinja reports keeps the file's line numbers."""
    count = front_matter_lines(source)
    if count == 0:
        return source
    rest = source.split("\n", count)[count] if source.count("\n") >= count else ""
    return "{#" + "\n" * (count - 1) + "#}\n" + rest


def is_locale_body(name: str) -> bool:
    """Whether a template name is a per-locale step body, emails/<sequence>/<locale>/<file>
    (partials/<locale>/ holds partials, which have no front matter)."""
    parts = name.split("/")
    return len(parts) == 4 and parts[0] == "emails" and parts[1] != "partials"


@dataclass(frozen=True)
class StepText:
    """One locale's texts for one step: the body template and the subject lines it gives."""

    locale: str
    sequence: str
    step: str
    template: str
    """Under templates/emails/, e.g. "partner-hesitant/hi-IN/welcome.md"."""
    path: Path
    fields: Mapping[str, str]
    """The subject lines the front matter gives, by field name (see SUBJECT_FIELDS)."""
    lines: Mapping[str, int]
    """The line of each field in the file."""


def with_texts(step: Step, template: str | None, fields: Mapping[str, str]) -> Step:
    """The step with another body template and the subject lines `fields` gives."""
    return dataclasses.replace(
        step,
        template=template or step.template,
        subject=fields.get("subject", step.subject),
        preheader=fields.get("preheader", step.preheader),
        discreet_subject=fields.get("discreet_subject", step.discreet_subject),
        discreet_preheader=fields.get("discreet_preheader", step.discreet_preheader),
    )


@dataclass(frozen=True)
class Localized:
    """A step as one reader gets it, and where each of its texts came from."""

    step: Step
    sources: Mapping[str, str]
    """Field ("body", "subject", ...) to the locale whose text is used."""


class Translations:
    """Every per-locale step text of one content version, and the lookup along a chain."""

    def __init__(self, texts: Iterable[StepText] = (),
                 folders: Mapping[str, frozenset[str]] | None = None) -> None:
        self.folders: Mapping[str, frozenset[str]] = dict(folders or {})
        """Sequence key to the locales with a folder for it: those that must cover it whole."""
        self._texts: dict[tuple[str, str, str], StepText] = {}
        for text in texts:
            self._texts[(text.sequence, text.step, text.locale)] = text
        self.locales: frozenset[str] = frozenset(key[2] for key in self._texts)
        """The locales that have texts of their own, for some step of some sequence."""
        # Resolved once per step and chain, so each fallback is logged once per content version.
        self._cache: dict[tuple[str, str, str | None, tuple[str, ...]], Localized] = {}

    def texts(self) -> list[StepText]:
        return list(self._texts.values())

    def get(self, sequence: str, step: str, locale: str) -> StepText | None:
        return self._texts.get((sequence, step, locale))

    def text_locale(self, chain: tuple[str, ...]) -> str:
        """The locale whose texts a reader with this chain is meant to read: the first of the
        chain that has texts at all, else the default. An en-IN reader reads the default texts
        by design; a hi-IN reader given an English text is a fallback."""
        return next((locale for locale in chain if locale in self.locales), DEFAULT_TEXT_LOCALE)

    def localize(self, sequence: Sequence, step: Step, chain: tuple[str, ...]) -> Localized:
        """The step with each text taken from the first locale of `chain` that has it (the
        default last); a text from further down than the reader's locale is logged, once."""
        key = (sequence.key, step.key, step.variant, chain)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(sequence, step, chain)
        return found

    def _resolve(self, sequence: Sequence, step: Step, chain: tuple[str, ...]) -> Localized:
        candidates = [t for loc in chain if (t := self.get(sequence.key, step.key, loc))]
        wanted = self.text_locale(chain)
        sources: dict[str, str] = {}
        changes: dict[str, str] = {}
        body = candidates[0] if candidates else None
        sources["body"] = body.locale if body else DEFAULT_TEXT_LOCALE
        for field in SUBJECT_FIELDS:
            text = next((t for t in candidates if field in t.fields), None)
            default = getattr(step, field)
            if text is None and default in (None, ""):
                continue
            sources[field] = text.locale if text else DEFAULT_TEXT_LOCALE
            if text is not None:
                changes[field] = text.fields[field]
        for field, source in sources.items():
            if source != wanted:
                self._log_fallback(sequence.key, step.key, field, wanted, source)
        return Localized(with_texts(step, body.template if body else None, changes), sources)

    @staticmethod
    def _log_fallback(sequence: str, step: str, field: str, wanted: str, used: str) -> None:
        log.info("email text fell back to another locale",
                 extra={"locale": wanted, "used_locale": used, "sequence": sequence,
                        "step": step, "field": field})
