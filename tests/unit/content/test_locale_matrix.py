"""The persona matrix for each locale of the shipped content: every step renders for every reason
set, in both modes, in each locale file's locale and each locale with texts of its own, with the
footer, without a revealing word in discreet headers, and, for a translation, with the same
sections and links as the default text for the same person."""

from __future__ import annotations

import re
from functools import cache

import pytest

from nurture.content.library import Content, load_content
from nurture.content.rules import DEFAULT_REVEALING_WORDS, word_pattern
from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.text import TEXT_WIDTH, columns
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from tests.support.paths import ROOT

BRAND = Brand(sender="Nurture <hello@example.org>", discreet_sender_name="Notes for you",
              postal_address="Nurture\n12 Example Lane\nSpringfield 40001",
              base_url="https://example.org")
LINKS = Links(unsubscribe_url="https://example.org/u/matrix", preferences_url="https://example.org/p/m",
              booked_url="https://example.org/booked/m", partner_yes_url="https://example.org/yes/m",
              started_solo_url="https://example.org/solo/m",
              discreet_url="https://example.org/p/m/discreet")
SHIPPED = ("partner-hesitant", "preparing-together", "starting-solo")
REASON_SETS = [frozenset({reason}) for reason in sorted(KNOWN_REASONS)] + [
    KNOWN_REASONS, frozenset(), frozenset({"fear_of_blame", "ganged_up_on"})]
_CONTENT_BLOCK = re.compile(r'<div class="content".*?<div class="crisis"', re.S)


@cache
def content() -> Content:
    return load_content(ROOT / "sequences", ROOT / "templates")


def locales() -> list[str]:
    library = content().library
    return sorted(set(library.locales.keys()) | library.translations.locales)


def steps() -> list[object]:
    return [pytest.param(content().sequences[key], step, id=f"{key}/{step.key}")
            for key in SHIPPED for step in content().sequences[key].steps]


def render(sequence: Sequence, step: Step, reasons: frozenset[str], discreet: bool,
           locale: str) -> RenderedEmail:
    recipient = Recipient("asha@example.org", "Asha",
                          Profile(hesitations=reasons, discreet=discreet, locale=locale))
    return content().library.render(sequence, step, recipient, LINKS, BRAND)


def shape(email: RenderedEmail) -> tuple[int, list[str]]:
    """The body's headings and the addresses it links to, in order: what a translation keeps."""
    block = _CONTENT_BLOCK.search(email.html)
    assert block is not None
    html = block.group(0)
    return len(re.findall(r"<h[1-6]\b", html)), re.findall(r'href="([^"]+)"', html)


@pytest.mark.parametrize("locale", locales())
@pytest.mark.parametrize(("sequence", "step"), steps())
def test_every_persona_in_every_locale(sequence: Sequence, step: Step, locale: str) -> None:
    library = content().library
    revealing = word_pattern(DEFAULT_REVEALING_WORDS | library.locales.revealing_words(locale))
    assert revealing is not None
    text_locale = library.localize(sequence, step, locale).sources["body"]
    for reasons in REASON_SETS:
        for discreet in (False, True):
            email = render(sequence, step, reasons, discreet, locale)
            where = (sorted(reasons), discreet, locale)
            assert email.subject and email.preheader, where
            for url in (LINKS.unsubscribe_url, LINKS.preferences_url):
                assert url in email.text and f'href="{url}"' in email.html, where
            assert all(columns(line) <= TEXT_WIDTH or " " not in line.strip()
                       for line in email.text.split("\n")), where
            if discreet:
                assert revealing.search(email.subject) is None, (email.subject, where)
                assert revealing.search(email.preheader) is None, (email.preheader, where)
            if text_locale != "en":
                default = render(sequence, step, reasons, discreet, "en-IN")
                assert shape(email) == shape(default), ("sections and links differ from the "
                                                        "default text", where)
