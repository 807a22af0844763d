"""The values rendering takes and gives: recipient, links, brand, the rendered email, locale data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from nurture.domain.model import Profile


@dataclass(frozen=True)
class Recipient:
    email: str
    first_name: str | None
    profile: Profile


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    """https URL, one click (RFC 8058)."""
    preferences_url: str
    """Pause / change settings page."""
    unsubscribe_mailto: str | None = None
    action_url: str | None = None
    """The one link a transactional email is about, such as the confirmation link."""
    booked_url: str | None = None
    """"We booked a call": a page with one button that ends the sequence as a conversion."""
    partner_yes_url: str | None = None
    """"My partner said yes": the same, for the partner agreeing before anything is booked."""
    started_solo_url: str | None = None
    """"I've started on my own": the same, for a person who began sessions by themselves."""
    discreet_url: str | None = None
    """The preferences page's button that turns discreet mode on."""


@dataclass(frozen=True)
class Brand:
    sender: str
    """For example "Nurture <hello@example.org>"."""
    discreet_sender_name: str
    """Neutral display name used in discreet mode, with the sender's address."""
    postal_address: str
    base_url: str
    booking_url: str | None = None
    """Where the consult invitation sends people to book; overrides the locale file's link."""
    reply_to: str | None = None
    """An inbox a person reads (Reply-To); without one, emails say there is nothing to reply to."""


@dataclass(frozen=True)
class RenderedEmail:
    from_header: str
    subject: str
    preheader: str
    html: str
    """Inlined, final."""
    text: str
    reply_to: str | None = None


@dataclass(frozen=True)
class CrisisLine:
    name: str
    contact: str
    note: str = ""


@dataclass(frozen=True)
class CrisisDirectory:
    """A directory of helplines for readers whose country's numbers are not listed."""

    name: str
    url: str


@dataclass(frozen=True)
class CrisisInfo:
    heading: str
    text: str
    lines: tuple[CrisisLine, ...]
    directory: CrisisDirectory | None = None
    framing: str = ""
    """What these notes are and are not: information, not care, and not for emergencies."""


@dataclass(frozen=True)
class Language:
    """How a locale is written and named: what pages and emails need so that a new locale, even a
    right-to-left one, is a new file and no new code."""

    name: str
    """How the language names itself, for the language switch: "English", "हिन्दी"."""
    tag: str
    """The BCP 47 tag for `lang=` attributes: "en-IN", "hi"."""
    direction: str = "ltr"
    """"ltr" or "rtl", for `dir=` attributes."""
    fallback: tuple[str, ...] = ()
    """The locales to borrow a missing text from, in order, ending with "en"."""


@dataclass(frozen=True)
class ReadabilityRule:
    """How validate measures a locale's texts: `flesch` (English: the Flesch reading ease, at
    least `flesch_floor`), `sentences` (any language written with spaces between words: average
    words per sentence and share of long words, at most the two limits), or `none`."""

    measure: str = "flesch"
    flesch_floor: float = 60.0
    # Set from the Hindi copy: Hindi writes postpositions and auxiliaries as words (का, में, है),
    # so its sentences count more words than English ones; 4+ aksharas make a long word there.
    max_words_per_sentence: float = 18.0
    max_long_word_share: float = 0.2
    long_word_graphemes: int = 4
    """A word of this many grapheme clusters (about aksharas in an Indic script) or more is long."""


@dataclass(frozen=True)
class LocaleData:
    key: str
    """The locale file's name without ".yaml", e.g. "en-IN"."""
    crisis: CrisisInfo
    resources: tuple[Mapping[str, str], ...]
    path: Path
    booking: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """The consult booking link and its label (`booking: {url, label}` in the locale file)."""
    language: Language = Language(name="English", tag="en")
    """The `language` block: name, tag, direction and fallback chain."""
    revealing_words: tuple[str, ...] = ()
    """`discreet.revealing_words`: words a discreet subject, preheader or opening must not use."""
    readability: ReadabilityRule = ReadabilityRule()
    email_texts: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """The layouts' words: the file's `email:` block, completed along its chain (see
    vocabulary.EMAIL_TEXTS)."""


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
