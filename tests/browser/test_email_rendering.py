"""Every email of the content, rendered for two people and opened in Chromium at a phone width
(375 px) and a desktop reading-pane width (800 px): no horizontal scrolling on the phone, the
unsubscribe and settings links visible, text contrast, and screenshots for people to look at."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

import pytest
from playwright.sync_api import Browser, Page, Route

from nurture.content.library import load_content
from nurture.content.sequences import load_sequence_file
from nurture.domain.model import Profile, Sequence
from nurture.domain.problems import ContentInvalid, Severity
from nurture.domain.reasons import KNOWN_REASONS
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Brand, Links, Recipient
from tests.browser import a11y
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.paths import ROOT

pytestmark = pytest.mark.browser

SEQUENCES: Final = ROOT / "sequences"
TEMPLATES: Final = ROOT / "templates"
# Loaded one by one when the whole content does not load (someone's sequence is mid-edit).
FALLBACK_SEQUENCES: Final = ("sample", "system")
WIDTHS: Final = (375, 800)
PHONE: Final = 375

BRAND: Final = Brand(
    sender="Nurture <hello@nurture.example.org>",
    discreet_sender_name="Notes for you",
    postal_address="Nurture Relationship Care\n12 Example Lane, Indiranagar\nBengaluru 560038",
    base_url="https://nurture.example.org",
)
# Real signed tokens, so the links are as long as the ones people get.
LINKS: Final = LinkMaker(base_url=BRAND.base_url, signer=TokenSigner("email-screenshots-secret-0123456789"))


@dataclass(frozen=True)
class Persona:
    name: str
    recipient: Recipient
    links: Links


def persona(name: str, recipient: Recipient, subscriber: UUID) -> Persona:
    links = dataclasses.replace(LINKS.for_subscriber(subscriber),
                                action_url=LINKS.confirm_url(subscriber))
    return Persona(name, recipient, links)


PERSONAS: Final = (
    # Every reason ticked, so every conditional section is in the email: the longest version.
    persona("open", Recipient(
        email="ashwini.krishnamurthy-raghavan@example.org", first_name="Ashwini",
        profile=Profile(time_zone="Europe/London", hesitations=KNOWN_REASONS, locale="en")),
        UUID("7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f")),
    # Discreet, no name, the Indian locale and its crisis lines.
    persona("discreet", Recipient(
        email="r.menon+notes@example.in", first_name=None,
        profile=Profile(time_zone="Asia/Kolkata", hesitations=frozenset({"stigma"}), discreet=True,
                        locale="en-IN")),
        UUID("0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a")),
)


@dataclass(frozen=True)
class Emails:
    library: TemplateLibrary
    sequences: tuple[Sequence, ...]
    fallback: str | None
    """Why only FALLBACK_SEQUENCES are rendered, or None when the whole content loaded."""


def load_emails() -> Emails:
    try:
        content = load_content(SEQUENCES, TEMPLATES)
    except ContentInvalid as refused:
        first = next((p for p in refused.problems if p.severity is Severity.ERROR), None)
        library = TemplateLibrary(TEMPLATES)
        sequences = []
        for key in FALLBACK_SEQUENCES:
            sequence, problems = load_sequence_file(SEQUENCES / f"{key}.yaml")
            errors = [p for p in problems if p.severity is Severity.ERROR]
            assert sequence is not None and not errors, "\n".join(map(str, errors))
            step_errors = [p for step in sequence.steps for p in library.check_step(sequence, step)
                           if p.severity is Severity.ERROR]
            assert not step_errors, "\n".join(map(str, step_errors))
            sequences.append(sequence)
        return Emails(library, tuple(sequences), f"the content does not load ({first})")
    return Emails(content.library, tuple(content.sequences[k] for k in sorted(content.sequences)), None)


@pytest.fixture(scope="module")
def emails() -> Emails:
    loaded = load_emails()
    if loaded.fallback:
        warnings.warn(f"{loaded.fallback}; rendering only {', '.join(FALLBACK_SEQUENCES)}",
                      UserWarning, stacklevel=1)
    return loaded


@pytest.fixture
def email_page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": PHONE, "height": 800})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)

    def refuse(route: Route) -> None:
        # An email must not need the network (remote images are blocked by most mail apps).
        route.abort()

    context.route(re.compile(r"^https?://"), refuse)
    yield context.new_page()
    context.close()


def test_the_content_loads_for_rendering(emails: Emails) -> None:
    keys = {sequence.key for sequence in emails.sequences}
    assert {"sample", "system"} <= keys
    assert sum(len(sequence.steps) for sequence in emails.sequences) >= 4


@pytest.mark.parametrize("who", PERSONAS, ids=lambda p: p.name)
def test_every_email_fits_a_phone_and_shows_its_links(who: Persona, emails: Emails, email_page: Page,
                                                     artifacts_dir: Path) -> None:
    page = email_page
    folder = artifacts_dir / "emails"
    folder.mkdir(exist_ok=True)
    problems: list[str] = []
    rendered_count = 0
    for sequence in emails.sequences:
        for step in sequence.steps:
            email = emails.library.render(sequence, step, who.recipient, who.links, BRAND)
            name = f"{sequence.key}-{step.key}-{who.name}"
            rendered_count += 1
            page.set_viewport_size({"width": WIDTHS[0], "height": 800})
            page.set_content(email.html, wait_until="load")
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 800})
                scroll_width, wide = a11y.horizontal_overflow(page, width)
                if width == PHONE and scroll_width > width + 1:
                    problems.append(f"{name}: {scroll_width} px wide at {width} px, "
                                    f"sticking out: {wide}")
                problems.extend(f"{name}@{width}: {problem}" for problem in a11y.link_problems(
                    page, {"unsubscribe": who.links.unsubscribe_url,
                           "settings": who.links.preferences_url}, width))
                if width == PHONE:
                    problems.extend(f"{name}: {finding}" for finding in a11y.contrast_findings(page))
                page.screenshot(path=folder / f"{name}-{width}.png", full_page=True)
            if (sequence.key, step.key) == ("system", "confirm"):
                # The confirmation email is all about its one link.
                assert who.links.action_url
                problems.extend(f"{name}: {problem}" for problem in a11y.link_problems(
                    page, {"confirmation": who.links.action_url}, WIDTHS[-1]))
    assert rendered_count >= 4
    assert problems == []


def test_the_phone_styles_win_over_the_inlined_ones(emails: Emails, email_page: Page) -> None:
    """The layout's @media block narrows the card's padding and the type on a phone; inlined
    styles would win over it unless its rules keep their !important through premailer."""
    sequence = next(s for s in emails.sequences if s.key == "sample")
    who = PERSONAS[0]
    email = emails.library.render(sequence, sequence.steps[0], who.recipient, who.links, BRAND)
    assert "!important" in email.html
    page = email_page
    page.set_content(email.html, wait_until="load")
    style = "(s) => [getComputedStyle(document.querySelector(s)).paddingLeft, " \
            "getComputedStyle(document.querySelector(s)).fontSize]"
    padding, _ = page.evaluate(style, ".card")
    _, size = page.evaluate(style, ".content")
    assert (padding, size) == ("16px", "16px")
    page.set_viewport_size({"width": 800, "height": 800})
    padding, _ = page.evaluate(style, ".card")
    _, size = page.evaluate(style, ".content")
    assert (padding, size) == ("28px", "17px")



# -- locales with texts of their own ------------------------------------------------------------

LOCALE_WIDTHS: Final = (375, 1280)


def text_locales() -> list[str]:
    """The locales that have email texts of their own in templates/emails/<sequence>/<locale>/:
    the test runs for each one as soon as its folder lands."""
    emails = TEMPLATES / "emails"
    return sorted({folder.name for sequence in emails.iterdir()
                   if sequence.is_dir() and sequence.name != "partials"
                   for folder in sequence.iterdir() if folder.is_dir()})


@pytest.mark.parametrize("locale", text_locales() or [pytest.param("none", marks=pytest.mark.skip(
    reason="no locale has email texts of its own yet"))])
def test_each_locale_reads_on_a_phone_and_a_desktop(locale: str, emails: Emails, email_page: Page,
                                                    artifacts_dir: Path) -> None:
    """Every email in the locale's own texts at 375 and 1280 px: its lang on the page, no
    horizontal scrolling, the footer links visible, contrast, and a screenshot of each."""
    who = dataclasses.replace(PERSONAS[0], recipient=dataclasses.replace(
        PERSONAS[0].recipient, first_name="मीरा",
        profile=dataclasses.replace(PERSONAS[0].recipient.profile, locale=locale)))
    page = email_page
    problems: list[str] = []
    rendered = 0
    for sequence in emails.sequences:
        for step in sequence.steps:
            if emails.library.localize(sequence, step, locale).sources["body"] != locale:
                continue
            email = emails.library.render(sequence, step, who.recipient, who.links, BRAND)
            rendered += 1
            page.set_content(email.html, wait_until="load")
            tag = emails.library.locale_data(locale).language.tag
            assert page.evaluate("document.documentElement.lang") == tag
            for width in LOCALE_WIDTHS:
                page.set_viewport_size({"width": width, "height": 800})
                scroll_width, wide = a11y.horizontal_overflow(page, width)
                if scroll_width > width + 1:
                    problems.append(f"{sequence.key}/{step.key}@{width}: {scroll_width} px wide, "
                                    f"sticking out: {wide}")
                problems.extend(f"{sequence.key}/{step.key}@{width}: {problem}"
                                for problem in a11y.link_problems(
                                    page, {"unsubscribe": who.links.unsubscribe_url,
                                           "settings": who.links.preferences_url}, width))
                problems.extend(f"{sequence.key}/{step.key}@{width}: {finding}"
                                for finding in a11y.contrast_findings(page))
                page.screenshot(path=artifacts_dir / f"email-{locale}-{sequence.key}-{step.key}"
                                f"-{width}.png", full_page=True)
    assert rendered > 0, f"no step has {locale} texts"
    assert problems == []
