"""The preheader (the preview line inboxes show next to the subject) stays hidden in the email itself,
in Chromium: no box, not in the visible text, and still no height and no opacity in a mail client
that drops `display: none`. It is hidden by its box, never by a colour that matches the background,
which spam filters count against the email (tests/integration/deliverability/test_spam_scores.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final
from uuid import UUID

import pytest
from playwright.sync_api import Browser, Page, Route

from nurture.content.library import Content, load_content
from nurture.domain.model import Profile
from nurture.domain.reasons import KNOWN_REASONS
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.types import Brand, Recipient
from tests.support.browser import DEFAULT_TIMEOUT_MS
from tests.support.paths import ROOT

pytestmark = pytest.mark.browser

BRAND: Final = Brand(sender="Nurture <hello@nurture.example.org>", discreet_sender_name="Notes for you",
                     postal_address="Nurture Relationship Care\n12 Example Lane\nBengaluru 560038",
                     base_url="https://nurture.example.org")
LINKS: Final = LinkMaker(base_url=BRAND.base_url, signer=TokenSigner("preheader-secret-0123456789abcdef"))
LOCALES: Final = tuple(sorted(path.stem for path in (ROOT / "templates" / "locales").glob("*.yaml")))

_PREHEADER_JS: Final = """() => {
  const element = document.querySelector('.preheader');
  if (!element) return null;
  const box = () => { const r = element.getBoundingClientRect(); return [r.width, r.height]; };
  // Part of the visible text when taking it out changes what the page reads.
  const shown = () => {
    const visible = document.body.innerText, parent = element.parentNode, next = element.nextSibling;
    element.remove();
    const without = document.body.innerText;
    parent.insertBefore(element, next);
    return visible !== without;
  };
  const text = element.textContent.replace(/[\\u00a0\\u200c\\s]+/g, ' ').trim();
  const hidden = {box: box(), inVisibleText: shown()};
  // A mail client that drops display:none must still show nothing: no height, fully transparent.
  element.style.removeProperty('display');
  const style = getComputedStyle(element);
  const withoutDisplay = {height: box()[1], opacity: style.opacity, overflow: style.overflow};
  return {text, hidden, withoutDisplay};
}"""


@pytest.fixture(scope="module")
def content() -> Content:
    return load_content(ROOT / "sequences", ROOT / "templates")


@pytest.fixture
def email_page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 375, "height": 800})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)

    def refuse(route: Route) -> None:
        route.abort()

    context.route(re.compile(r"^https?://"), refuse)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("discreet", [False, True], ids=["plain", "discreet"])
def test_the_preheader_is_hidden_in_every_email(discreet: bool, content: Content,
                                                email_page: Page) -> None:
    problems: list[str] = []
    checked = 0
    for sequence in content.sequences.values():
        for step in sequence.steps:
            for locale in LOCALES:
                profile = Profile(time_zone="UTC", hesitations=KNOWN_REASONS, discreet=discreet,
                                  locale=locale)
                links = LINKS.for_subscriber(UUID("7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"))
                email = content.library.render(sequence, step, Recipient("sam@example.net", "Sam", profile),
                                               links, BRAND)
                email_page.set_content(email.html, wait_until="load")
                facts: dict[str, Any] | None = email_page.evaluate(_PREHEADER_JS)
                name = f"{sequence.key}/{step.key} [{locale}]"
                checked += 1
                if facts is None:
                    problems.append(f"{name}: no .preheader element")
                    continue
                if facts["text"] != email.preheader.strip():
                    problems.append(f"{name}: preheader reads {facts['text']!r}, not {email.preheader!r}")
                if facts["hidden"] != {"box": [0, 0], "inVisibleText": False}:
                    problems.append(f"{name}: the preheader shows: {facts['hidden']}")
                without = facts["withoutDisplay"]
                if without["height"] != 0 or without["opacity"] != "0" or without["overflow"] != "hidden":
                    problems.append(f"{name}: without display:none the preheader shows: {without}")
    assert checked >= 8
    assert problems == []
