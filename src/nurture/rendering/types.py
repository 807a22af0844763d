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
    """"We booked a consult": one click that ends the sequence as a conversion."""


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


@dataclass(frozen=True)
class RenderedEmail:
    from_header: str
    subject: str
    preheader: str
    html: str
    """Inlined, final."""
    text: str


@dataclass(frozen=True)
class CrisisLine:
    name: str
    contact: str
    note: str = ""


@dataclass(frozen=True)
class CrisisInfo:
    heading: str
    text: str
    lines: tuple[CrisisLine, ...]


@dataclass(frozen=True)
class LocaleData:
    key: str
    """The locale file's name without ".yaml", e.g. "en-IN"."""
    crisis: CrisisInfo
    resources: tuple[Mapping[str, str], ...]
    path: Path
    booking: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """The consult booking link and its label (`booking: {url, label}` in the locale file)."""


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
