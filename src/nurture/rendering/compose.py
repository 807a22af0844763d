"""Runs the templates: the Jinja sandbox over templates/, the context a template sees, the subject and
preheader, the body as HTML and as text, and the layouts around them (not yet inlined)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from nurture.domain.model import Profile, Sequence, Step
from nurture.rendering.escaping import one_line
from nurture.rendering.mime import from_header
from nurture.rendering.text import html_to_text, markdown_to_text, tidy_text
from nurture.rendering.translations import is_locale_body, without_front_matter
from nurture.rendering.types import Brand, LocaleData
from nurture.rendering.vocabulary import BOOKING_FIELDS, HTML_LAYOUT, PARTNER_PAGE_PATH, TEXT_LAYOUT

_IMAGE_TAG: Final = re.compile(r"<(?:img|image)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.IGNORECASE)


def _is_html_template(name: str | None) -> bool:
    return name is not None and name.endswith(".html")


def step_strings(step: Step) -> list[tuple[str, str]]:
    """The step's templates that live in the sequence file, by field name."""
    strings = [("subject", step.subject), ("preheader", step.preheader)]
    if step.discreet_subject is not None:
        strings.append(("discreet_subject", step.discreet_subject))
    if step.discreet_preheader is not None:
        strings.append(("discreet_preheader", step.discreet_preheader))
    return strings


def subject_sources(step: Step, discreet: bool) -> tuple[str, str]:
    """The subject and preheader templates for the mode, the regular ones standing in."""
    if discreet:
        subject = step.discreet_subject if step.discreet_subject is not None else step.subject
        preheader = step.discreet_preheader if step.discreet_preheader is not None else step.preheader
        return subject, preheader
    return step.subject, step.preheader


def template_context(
    sequence: Sequence,
    step: Step,
    profile: Profile,
    locale: LocaleData,
    *,
    brand: Brand,
    values: Mapping[str, str],
) -> dict[str, Any]:
    """What a body, subject or layout sees; `values` are the personal ones (or their placeholders)."""
    # The locale file describes the call (label, duration, with whom, format, languages, cost);
    # NURTURE_BOOKING_URL, when set, is where it is booked. A field the file leaves out is empty,
    # so a template can ask `{% if booking.languages %}`.
    booking = {**dict.fromkeys(BOOKING_FIELDS, ""), **locale.booking,
               "url": brand.booking_url or locale.booking.get("url", "")}
    return {
        "booking": booking,
        # The public page written to the hesitant partner, to be forwarded: the same for everyone.
        "partner_page_url": brand.base_url.rstrip("/") + PARTNER_PAGE_PATH,
        "booked_url": values["booked_url"],
        "partner_yes_url": values["partner_yes_url"],
        "started_solo_url": values["started_solo_url"],
        "discreet_url": values["discreet_url"],
        "replies_read": brand.reply_to is not None,
        "first_name": values["first_name"],
        "hesitations": profile.hesitations,
        "discreet": profile.discreet,
        "locale": profile.locale,
        "language": locale.language,
        "texts": locale.email_texts,
        "sequence": sequence.key,
        "step": step.key,
        "crisis": locale.crisis,
        "resources": locale.resources,
        "postal_address": brand.postal_address,
        "unsubscribe_url": values["unsubscribe_url"],
        "preferences_url": values["preferences_url"],
        "action_url": values["action_url"],
    }


class _Loader(jinja2.FileSystemLoader):
    """The templates folder, with the subject lines of a per-locale body left out of its text."""

    def get_source(self, environment: jinja2.Environment, template: str
                   ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if is_locale_body(template):
            source = without_front_matter(source)
        return source, filename, uptodate


class Composer:
    """The Jinja sandbox over one templates folder, and the parts of an email it renders."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = ImmutableSandboxedEnvironment(
            loader=_Loader(templates_dir),
            autoescape=_is_html_template,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=1000,
        )
        # Raw HTML in Markdown is off: marketers who need HTML write an .html body.
        self._markdown = MarkdownIt("commonmark", {"html": False})
        self._strings: dict[str, jinja2.Template] = {}

    def source(self, name: str) -> str:
        """The text of a template file, by its name under templates/."""
        loader = self.env.loader
        assert loader is not None
        return loader.get_source(self.env, name)[0]

    def _string_template(self, source: str) -> jinja2.Template:
        template = self._strings.get(source)
        if template is None:
            template = self.env.from_string(source)
            self._strings[source] = template
        return template

    def headers(
        self,
        step: Step,
        context: Mapping[str, Any],
        brand: Brand,
        discreet: bool,
    ) -> tuple[str, str, str]:
        """(From, subject, preheader), each one line."""
        subject_source, preheader_source = subject_sources(step, discreet)
        subject = one_line(self._string_template(subject_source).render(context))
        preheader = one_line(self._string_template(preheader_source).render(context))
        sender = from_header(brand.sender, brand.discreet_sender_name if discreet else None)
        return sender, subject, preheader

    def body_parts(self, step: Step, context: Mapping[str, Any], *, discreet: bool) -> tuple[str, str]:
        """The body as an HTML fragment and as plain text."""
        template = self.env.get_template(f"emails/{step.template}")
        source = template.render(context)
        if step.template.endswith(".md"):
            tokens = self._markdown.parse(source)
            html = self._markdown.renderer.render(tokens, self._markdown.options, {})
            return html, markdown_to_text(tokens, discreet=discreet)
        return source, html_to_text(source, discreet=discreet)

    def documents(
        self,
        context: Mapping[str, Any],
        *,
        body_html: str,
        body_text: str,
        subject: str,
        preheader: str,
        email: str,
        base_url: str,
        discreet: bool,
    ) -> tuple[str, str]:
        """The HTML layout around the HTML body (not yet inlined) and the text layout around the
        text body, with the same values."""
        values = {"subject": subject, "preheader": preheader, "email": email, "base_url": base_url}
        html = self.env.get_template(HTML_LAYOUT).render(context, body=Markup(body_html), **values)
        if discreet:
            # Images would be fetched from a server when opened: nothing of the kind in discreet mode.
            html = _IMAGE_TAG.sub("", html)
        text = self.env.get_template(TEXT_LAYOUT).render(context, body=body_text, **values)
        return html, tidy_text(text)
