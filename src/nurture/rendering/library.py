"""Turns a sequence step and a recipient into a finished email (inlined HTML, plain text, headers).

Marketer templates run in Jinja's sandbox; CSS is inlined once per distinct structure (see DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import premailer
from jinja2 import nodes
from markupsafe import escape

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.problems import ContentProblem
from nurture.rendering.analysis import StepFacts, included_names, step_facts
from nurture.rendering.cache import Structure, StructureCache
from nurture.rendering.checks import check_layouts, check_step
from nurture.rendering.compose import Composer, step_strings, subject_sources, template_context
from nurture.rendering.escaping import ESCAPERS, UNSAFE_CHARS, URL, Context, check_url, one_line
from nurture.rendering.locales import Locales
from nurture.rendering.placeholders import Placeholders
from nurture.rendering.text import wrap_line, wrap_text
from nurture.rendering.translations import DEFAULT_TEXT_LOCALE, Localized, Translations
from nurture.rendering.types import (
    Brand,
    CacheStats,
    Language,
    Links,
    LocaleData,
    Recipient,
    RenderedEmail,
)
from nurture.rendering.vocabulary import HTML_LAYOUT, TEXT_LAYOUT

# The same options for the fast and the naive path: the equivalence test depends on it.
PREMAILER_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "disable_validation": True,
        "allow_network": False,
        "allow_loading_external_files": False,
        "disable_link_rewrites": True,
        # The phone rules stay in a <style> block and must beat the inlined styles: premailer would
        # strip their !important, so the narrow-screen padding and type size never applied.
        "strip_important": False,
        "cssutils_logging_level": logging.CRITICAL,
    }
)
DEFAULT_CACHE_SIZE: Final = 4096


def _personal_values(recipient: Recipient, links: Links) -> dict[str, str]:
    if UNSAFE_CHARS.search(recipient.email) or not recipient.email.strip():
        raise ValueError(f"recipient email is empty or has control characters: {recipient.email!r}")
    return {
        "first_name": one_line(recipient.first_name or ""),
        "email": recipient.email.strip(),
        "unsubscribe_url": check_url("unsubscribe_url", links.unsubscribe_url, URL),
        "preferences_url": check_url("preferences_url", links.preferences_url, URL),
        "action_url": _optional_url("action_url", links.action_url),
        "booked_url": _optional_url("booked_url", links.booked_url),
        "partner_yes_url": _optional_url("partner_yes_url", links.partner_yes_url),
        "started_solo_url": _optional_url("started_solo_url", links.started_solo_url),
        "discreet_url": _optional_url("discreet_url", links.discreet_url),
    }


def _optional_url(name: str, value: str | None) -> str:
    return check_url(name, value, URL) if value else ""


class TemplateLibrary:
    """One load of `templates/`: Jinja sandbox, locales, and the cache of inlined structures.

    Load a new library for each content version; nothing here re-reads files that changed.
    """

    def __init__(self, templates_dir: Path, *, cache_size: int = DEFAULT_CACHE_SIZE,
                 translations: Translations | None = None) -> None:
        self.templates_dir = templates_dir
        self.translations = translations or Translations()
        self._composer = Composer(templates_dir)
        self._placeholders = Placeholders()
        self._facts: dict[tuple[str, ...], StepFacts] = {}
        self._cache = StructureCache(cache_size)
        self._locales = Locales(templates_dir / "locales")

    def locale_data(self, locale: str) -> LocaleData:
        """The locale's data: exact match ("en-IN"), then its language ("en"), then "en"."""
        return self._locales.find(locale)

    @property
    def locales(self) -> Locales:
        return self._locales

    def localize(self, sequence: Sequence, step: Step, locale: str) -> Localized:
        """The step with the texts a reader in `locale` gets: their locale's own where it has
        them, else along its fallback chain to the default texts (each fallback logged)."""
        return self.translations.localize(sequence, step, self._locales.chain(locale))

    def reads_default_text(self, sequence: Sequence, step: Step, locale: str) -> bool:
        """Whether a reader in `locale` gets the step's default texts (sequence file and
        templates/emails/<sequence>/), which is what an experiment's variants change."""
        sources = self.localize(sequence, step, locale).sources
        return all(source == DEFAULT_TEXT_LOCALE for source in sources.values())

    def _reader_locale(self, locale: str, localized: Localized) -> LocaleData:
        """The locale's data, its language that of the body the reader gets: a Hindi reader of
        a sequence not yet in Hindi gets an email marked English (lang=, dir=)."""
        data = self.locale_data(locale)
        if data.key in self._locales.fallbacks:
            self._locales.log_fallbacks(data.key)
        body = localized.sources["body"]
        if body.split("-", 1)[0].lower() == data.language.tag.split("-", 1)[0].lower():
            return data
        found = self.locale_data(body)
        same = found.language.tag.split("-", 1)[0].lower() == body.split("-", 1)[0].lower()
        language = found.language if same else Language(name=body, tag=body)
        return dataclasses.replace(data, language=language)

    def check_step(self, sequence: Sequence, step: Step, *, where: tuple[Path, int] | None = None,
                   locales: tuple[str, ...] | None = None) -> list[ContentProblem]:
        """Problems with a step's templates, as file:line with a fix; empty when it can render.

        `where` is where its subject lines are written (the step's line in its sequence file by
        default); `locales` those to try it in (every locale file by default)."""
        return check_step(self._composer, self._locales, sequence, step, where=where,
                          locales_to_try=locales)

    def check_layouts(self) -> list[ContentProblem]:
        """Problems with the layouts (and the locale files whose footer they show)."""
        return check_layouts(self._composer, self._locales)

    def render(
        self, sequence: Sequence, step: Step, recipient: Recipient, links: Links, brand: Brand
    ) -> RenderedEmail:
        """The email for one recipient, from the cached inlined structure when there is one."""
        profile = recipient.profile
        localized = self.localize(sequence, step, profile.locale)
        step = localized.step
        values = _personal_values(recipient, links)
        locale = self._reader_locale(profile.locale, localized)
        context = template_context(sequence, step, profile, locale, brand=brand, values=values)
        from_header, subject, preheader = self._composer.headers(step, context, brand, profile.discreet)
        structure = self._structure(sequence, step, profile, locale, brand, values)

        escaped: dict[tuple[str, Context], str] = {}
        parts = [structure.html_literals[0]]
        for (name, where), literal in zip(structure.html_slots, structure.html_literals[1:], strict=True):
            value = escaped.get((name, where))
            if value is None:
                value = escaped[(name, where)] = ESCAPERS[where](values[name])
            parts.append(value)
            parts.append(literal)
        html = "".join(parts)

        fill = self._placeholders.fill
        text = "\n".join(
            wrap_line(fill(line, values, str)) if dynamic else line for dynamic, line in structure.text_lines
        )
        return RenderedEmail(from_header, subject, preheader, html, text, reply_to=brand.reply_to)

    def _step_facts(self, step: Step) -> StepFacts:
        key = (
            step.template,
            step.subject,
            step.preheader,
            step.discreet_subject or "",
            step.discreet_preheader or "",
        )
        facts = self._facts.get(key)
        if facts is None:
            composer = self._composer
            asts = [composer.env.parse(text) for _, text in step_strings(step)]
            files = (f"emails/{step.template}", HTML_LAYOUT, TEXT_LAYOUT)
            asts += [composer.env.parse(composer.source(name)) for name in files]
            facts = self._facts[key] = step_facts(self._with_partials(asts))
        return facts

    def _with_partials(self, asts: list[nodes.Template]) -> list[nodes.Template]:
        """The trees and those of the partials they include by name, each once, recursively."""
        found, pending, seen = [], list(asts), set()
        while pending:
            ast = pending.pop()
            found.append(ast)
            for name in included_names(ast):
                if name not in seen:
                    seen.add(name)
                    pending.append(self._composer.env.parse(self._composer.source(name)))
        return found

    def _structure(
        self,
        sequence: Sequence,
        step: Step,
        profile: Profile,
        locale: LocaleData,
        brand: Brand,
        values: Mapping[str, str],
    ) -> Structure:
        facts = self._step_facts(step)
        hesitations = profile.hesitations if facts.reasons is None else profile.hesitations & facts.reasons
        has_first_name = bool(values["first_name"]) or not facts.uses_first_name
        subject_source, preheader_source = subject_sources(step, profile.discreet)
        key = (
            sequence.key,
            step.key,
            step.template,
            subject_source,
            preheader_source,
            profile.locale,
            locale.key,
            hesitations,
            profile.discreet,
            has_first_name,
            brand.postal_address,
            brand.base_url,
            brand.booking_url,
            # `replies_read` picks the welcome's wording, so it is part of the structure.
            brand.reply_to is not None,
        )
        structure = self._cache.get(key)
        if structure is None:
            structural = Profile(
                time_zone="UTC",
                hesitations=hesitations,
                discreet=profile.discreet,
                locale=profile.locale,
            )
            structure = self._build_structure(sequence, step, structural, locale, brand, has_first_name)
            self._cache.put(key, structure)
        return structure

    def _build_structure(
        self,
        sequence: Sequence,
        step: Step,
        profile: Profile,
        locale: LocaleData,
        brand: Brand,
        has_first_name: bool,
    ) -> Structure:
        placeholders = self._placeholders.values(has_first_name=has_first_name)
        context = template_context(sequence, step, profile, locale, brand=brand, values=placeholders)
        _, subject, preheader = self._composer.headers(step, context, brand, profile.discreet)
        body_html, body_text = self._composer.body_parts(step, context, discreet=profile.discreet)
        document, text = self._composer.documents(
            context,
            body_html=body_html,
            body_text=body_text,
            subject=subject,
            preheader=preheader,
            email=placeholders["email"],
            base_url=brand.base_url,
            discreet=profile.discreet,
        )
        inlined: str = premailer.transform(document, **PREMAILER_OPTIONS)
        self._placeholders.check_intact(inlined, step)
        literals, slots = self._placeholders.split_html(inlined)
        self._placeholders.check_intact(text, step)
        lines = tuple(
            (True, line) if self._placeholders.found_in(line) else (False, wrap_line(line))
            for line in text.split("\n")
        )
        return Structure(literals, slots, _runs_joined(lines))

    def render_naive(
        self, sequence: Sequence, step: Step, recipient: Recipient, links: Links, brand: Brand
    ) -> RenderedEmail:
        """The reference path: render with the real values and inline every time (no cache).

        Markdown never sees personal values (a name like "*Sam*" or "[x](y)" must stay text), so a
        Markdown body is converted with placeholders and the escaped values are put in before the
        layout; the layout, subject and HTML bodies get the real values directly.
        """
        profile = recipient.profile
        localized = self.localize(sequence, step, profile.locale)
        step = localized.step
        values = _personal_values(recipient, links)
        locale = self._reader_locale(profile.locale, localized)
        context = template_context(sequence, step, profile, locale, brand=brand, values=values)
        from_header, subject, preheader = self._composer.headers(step, context, brand, profile.discreet)
        if step.template.endswith(".md"):
            placeholders = self._placeholders.values(has_first_name=bool(values["first_name"]))
            placeholder_context = {**context, **{k: placeholders[k] for k in context if k in placeholders}}
            body_html, body_text = self._composer.body_parts(
                step, placeholder_context, discreet=profile.discreet
            )
            body_html = self._placeholders.fill(body_html, values, lambda value: str(escape(value)))
            body_text = self._placeholders.fill(body_text, values, str)
        else:
            body_html, body_text = self._composer.body_parts(step, context, discreet=profile.discreet)
        document, text = self._composer.documents(
            context,
            body_html=body_html,
            body_text=body_text,
            subject=subject,
            preheader=preheader,
            email=values["email"],
            base_url=brand.base_url,
            discreet=profile.discreet,
        )
        html: str = premailer.transform(document, **PREMAILER_OPTIONS)
        return RenderedEmail(from_header, subject, preheader, html, wrap_text(text),
                             reply_to=brand.reply_to)

    def cache_stats(self) -> CacheStats:
        return CacheStats(self._cache.hits, self._cache.misses, len(self._cache))


def _runs_joined(lines: tuple[tuple[bool, str], ...]) -> tuple[tuple[bool, str], ...]:
    """The lines with each run of lines without a placeholder joined into one: the text is the
    same once joined by newlines, and each email then handles a few pieces rather than every
    line."""
    pieces: list[tuple[bool, str]] = []
    run: list[str] = []
    for dynamic, line in lines:
        if not dynamic:
            run.append(line)
            continue
        if run:
            pieces.append((False, "\n".join(run)))
            run = []
        pieces.append((True, line))
    if run:
        pieces.append((False, "\n".join(run)))
    return tuple(pieces)

