"""Every step rendered for a few sample personas with fixed links, so the content rules and the
readability report can read the finished emails; and where the body ends in the text part."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from nurture.rendering.vocabulary import TEXT_LAYOUT

# Fixed values for the rendering the rules inspect; they only need to be recognisable afterwards.
SAMPLE_LINKS: Final = Links(
    unsubscribe_url="https://rules.example.org/unsubscribe/check",
    preferences_url="https://rules.example.org/preferences/check",
    action_url="https://rules.example.org/action/check",
    booked_url="https://rules.example.org/booked/check",
    partner_yes_url="https://rules.example.org/yes/check",
    started_solo_url="https://rules.example.org/solo/check",
    discreet_url="https://rules.example.org/preferences/check/discreet",
)
SAMPLE_BRAND: Final = Brand(
    sender="Nurture <hello@example.org>",
    discreet_sender_name="Notes",
    postal_address="Rules Check, 1 Example Street, Example Town 10001",
    base_url="https://rules.example.org",
)
_SAMPLE_EMAIL: Final = "reader@example.org"
_SAMPLE_NAME: Final = "Sam"
_FALLBACK_LOCALE: Final = "en"

_BODY_TAG: Final = re.compile(r"\{\{-?\s*body\s*-?\}\}")


@dataclass(frozen=True)
class Persona:
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
class StepRenders:
    emails: tuple[tuple[Persona, RenderedEmail], ...]
    failure: str | None


def _locales(library: TemplateLibrary) -> list[str]:
    found = {path.stem for path in (library.templates_dir / "locales").glob("*.yaml")}
    return sorted(found | {_FALLBACK_LOCALE} | library.translations.locales)


def _personas(library: TemplateLibrary) -> list[Persona]:
    """Few, because each distinct email costs a CSS inlining: no reason (the general sections) and
    every reason (every section and combination), in both modes; a nameless discreet reader (the
    other branch of `{% if first_name %}`), in the default texts and in each locale's own; and
    each further locale's footer and resources."""
    personas: list[Persona] = []
    for locale in [_FALLBACK_LOCALE, *sorted(library.translations.locales - {_FALLBACK_LOCALE})]:
        personas += [
            Persona(reasons, discreet, locale, _SAMPLE_NAME)
            for reasons, discreet in itertools.product((frozenset(), KNOWN_REASONS), (False, True))
        ]
        personas.append(Persona(frozenset(), True, locale, None))
    personas += [
        Persona(frozenset(), False, locale, _SAMPLE_NAME)
        for locale in _locales(library)
        if locale != _FALLBACK_LOCALE and locale not in library.translations.locales
    ]
    return personas


def _render_step(
    sequence: Sequence, step: Step, library: TemplateLibrary, personas: list[Persona], links: Links
) -> StepRenders:
    emails: list[tuple[Persona, RenderedEmail]] = []
    for persona in personas:
        profile = Profile(hesitations=persona.hesitations, discreet=persona.discreet, locale=persona.locale)
        recipient = Recipient(email=_SAMPLE_EMAIL, first_name=persona.first_name, profile=profile)
        # Any failure is a content problem to report, never a crash of the check.
        try:
            emails.append((persona, library.render(sequence, step, recipient, links, SAMPLE_BRAND)))
        except Exception as error:
            return StepRenders(tuple(emails), f"{type(error).__name__}: {error} ({persona.describe()})")
    return StepRenders(tuple(emails), None)


def sample_renders(
    sequences: Mapping[str, Sequence], library: TemplateLibrary
) -> Iterator[tuple[Sequence, Step, StepRenders]]:
    """Each step of each sequence (in key and step order) with its sample emails."""
    personas = _personas(library)
    links = SAMPLE_LINKS
    for key in sorted(sequences):
        sequence = sequences[key]
        for step in sequence.steps:
            # Every variant of an experiment is an email someone gets: each meets every rule.
            for version in step.versions():
                yield sequence, version, _render_step(sequence, version, library, personas, links)


def footer_separator(library: TemplateLibrary) -> str | None:
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
