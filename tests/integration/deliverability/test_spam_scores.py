"""Every email scored by SpamAssassin as a receiving server scores it (Debian's spamd, the rules the
package ships, local tests only): every step of every sequence, in every locale file, discreet and
not, for people with no reason ticked, one or all, with a first name and without, built as the
dispatcher builds them. No rule with a positive score may fire.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest

from nurture.content.library import NOT_SEQUENCES, Content, load_content
from nurture.domain.model import Profile
from nurture.domain.reasons import KNOWN_REASONS
from nurture.engine.decisions import CONFIRM_STEP, SYSTEM_SEQUENCE, message_id_for
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.mime import build_message
from nurture.rendering.types import Brand, Recipient, RenderedEmail
from tests.support.paths import ROOT
from tests.support.spamassassin import Score, Spamd

SEQUENCES: Final = ROOT / "sequences"
TEMPLATES: Final = ROOT / "templates"
LOCALES: Final = tuple(sorted(path.stem for path in (TEMPLATES / "locales").glob("*.yaml")))
SEQUENCE_KEYS: Final = tuple(sorted(path.stem for path in SEQUENCES.glob("*.yaml")
                                    if path.name not in NOT_SEQUENCES))

INFORMATIONAL: Final[Mapping[str, str]] = {
    # Scored 0.001 by SpamAssassin's own convention for rules that say what a message is.
    "HTML_MESSAGE": "the message has an HTML part, as every email here does",
}
INFORMATIONAL_SCORE: Final = 0.001

POSTAL_ADDRESS: Final = "Nurture Relationship Care\n12 Example Lane, Indiranagar\nBengaluru 560038"
SENDER_DOMAIN: Final = "nurture.example.org"


@dataclass(frozen=True)
class Letterhead:
    """The sender's settings: with and without an inbox that reads replies and a mailto unsubscribe."""

    brand: Brand
    links: LinkMaker


def letterhead(*, replies: bool) -> Letterhead:
    brand = Brand(sender=f"Nurture <hello@{SENDER_DOMAIN}>", discreet_sender_name="Notes for you",
                  postal_address=POSTAL_ADDRESS, base_url=f"https://{SENDER_DOMAIN}",
                  reply_to=f"care@{SENDER_DOMAIN}" if replies else None)
    # Real signed tokens, so the links are as long as the ones people get.
    links = LinkMaker(base_url=brand.base_url, signer=TokenSigner("spam-score-secret-0123456789abcdef"),
                      unsubscribe_mailto=f"unsubscribe@{SENDER_DOMAIN}" if replies else None)
    return Letterhead(brand, links)


QUIET: Final = letterhead(replies=False)
REPLIES: Final = letterhead(replies=True)


@dataclass(frozen=True)
class Persona:
    name: str
    email: str
    first_name: str | None
    hesitations: frozenset[str]
    letterhead: Letterhead


PERSONAS: Final = (
    Persona("no-reasons-no-name", "r.menon+notes@example.in", None, frozenset(), QUIET),
    Persona("one-reason-named", "zoe.martin@example.com", "Zoë", frozenset({"stigma"}), REPLIES),
    Persona("all-reasons-named", "ashwini.krishnamurthy-raghavan@example.org", "Ashwini",
            KNOWN_REASONS, QUIET),
    Persona("all-reasons-no-name", "sam@example.net", None, KNOWN_REASONS, REPLIES),
    # A name in Devanagari: the subject carries it as RFC 2047 encoded words, in every locale.
    Persona("devanagari-name", "meera.s@example.in", "मीरा", frozenset({"stigma"}), QUIET),
)


@dataclass(frozen=True)
class Email:
    sequence: str
    step: str
    locale: str
    discreet: bool
    persona: str
    data: bytes

    def __str__(self) -> str:
        mode = "discreet" if self.discreet else "plain"
        return f"{self.sequence}/{self.step} [{self.locale}, {mode}, {self.persona}]"


def build_email(content: Content, sequence_key: str, step_key: str, locale: str, discreet: bool,
                persona: Persona, now: datetime) -> Email:
    """One email as engine/decisions.py renders and builds it for a claimed delivery."""
    sequence = content.sequences[sequence_key]
    step = sequence.step(step_key)
    assert step is not None
    subscriber = uuid5(NAMESPACE_URL, f"{sequence_key}/{step_key}/{locale}/{discreet}/{persona.name}")
    maker = persona.letterhead.links
    links = maker.for_subscriber(subscriber)
    if (sequence_key, step_key) == (SYSTEM_SEQUENCE, CONFIRM_STEP):
        links = dataclasses.replace(links, action_url=maker.confirm_url(subscriber))
    profile = Profile(time_zone="Asia/Kolkata", hesitations=persona.hesitations, discreet=discreet,
                      locale=locale)
    recipient = Recipient(persona.email, persona.first_name, profile)
    rendered = content.library.render(sequence, step, recipient, links, persona.letterhead.brand)
    data = build_message(rendered, to=persona.email, message_id=message_id_for(subscriber, SENDER_DOMAIN),
                         links=links, date=now)
    return Email(sequence_key, step_key, locale, discreet, persona.name, data)


def every_email(content: Content, now: datetime) -> list[Email]:
    """Every step for every persona, whatever the step's `when`: a superset of what is sent."""
    return [
        build_email(content, sequence.key, step.key, locale, discreet, persona, now)
        for sequence in sorted(content.sequences.values(), key=lambda s: s.key)
        for step in sequence.steps
        for locale in LOCALES
        for discreet in (False, True)
        for persona in PERSONAS
    ]


@dataclass(frozen=True)
class Scored:
    content: Content
    emails: list[tuple[Email, Score]]
    version: str

    def of(self, sequence: str) -> list[tuple[Email, Score]]:
        return [(email, score) for email, score in self.emails if email.sequence == sequence]


@pytest.fixture(scope="module")
def scored(spamd: Spamd) -> Scored:
    content = load_content(SEQUENCES, TEMPLATES)
    emails = every_email(content, datetime.now(UTC))
    scores = spamd.check_all(email.data for email in emails)
    return Scored(content, list(zip(emails, scores, strict=True)), spamd.version)


def positive_rules(email: Email, score: Score) -> dict[str, float]:
    """The rules that count against the email, leaving out the informational ones."""
    return {
        rule: points for rule, points in score.rules.items()
        if points > 0
        and not (rule in INFORMATIONAL and points <= INFORMATIONAL_SCORE)
    }


def test_every_step_locale_mode_and_persona_is_scored(scored: Scored) -> None:
    assert set(scored.content.sequences) == set(SEQUENCE_KEYS)
    assert {"en", "en-IN"} <= set(LOCALES)
    # A locale with email texts of its own has a locale file, so it is scored above.
    assert scored.content.library.translations.locales <= set(LOCALES)
    expected = {
        (sequence.key, step.key, locale, discreet, persona.name)
        for sequence in scored.content.sequences.values() for step in sequence.steps
        for locale in LOCALES for discreet in (False, True) for persona in PERSONAS
    }
    seen = {(e.sequence, e.step, e.locale, e.discreet, e.persona) for e, _ in scored.emails}
    assert seen == expected
    # Proof that the report was read: every HTML email carries the informational HTML_MESSAGE.
    assert all("HTML_MESSAGE" in score.rules for _, score in scored.emails)


@pytest.mark.parametrize("sequence", SEQUENCE_KEYS)
def test_no_rule_with_a_positive_score_fires(sequence: str, scored: Scored) -> None:
    emails = scored.of(sequence)
    assert emails, f"no email of {sequence} was scored"
    found = defaultdict(list)
    for email, score in emails:
        for rule, points in sorted(positive_rules(email, score).items()):
            found[f"{rule} (+{points:g})"].append(f"{email} total {score.total:g}")
    assert not found, (
        f"SpamAssassin ({scored.version}) rules with a positive score fired:\n" + "\n".join(
            f"{rule} on {len(where)} emails:\n  " + "\n  ".join(where) for rule, where in found.items()))


def test_the_scorer_sees_a_rule_that_fires(spamd: Spamd) -> None:
    """The same path flags text hidden by its colour, as the old preheader was: a clean report above
    is SpamAssassin's verdict, not a report that was never read."""
    subscriber = UUID("7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f")
    html = ('<html><body><table bgcolor="#ffffff"><tr><td><p>Hello there.</p>'
            '<p style="color:#fefefe">hidden words that nobody can read here</p></td></tr></table>'
            "</body></html>")
    email = RenderedEmail(from_header=QUIET.brand.sender, subject="Hello", preheader="", html=html,
                          text="Hello there.\n")
    links = QUIET.links.for_subscriber(subscriber)
    data = build_message(email, to="sam@example.net", message_id=message_id_for(subscriber, SENDER_DOMAIN),
                         links=links, date=datetime.now(UTC))
    score = spamd.check(data)
    assert score.rules.get("HTML_FONT_LOW_CONTRAST", 0) > 0, score
