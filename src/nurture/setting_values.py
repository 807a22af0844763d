"""How the text of a setting becomes a value, and the checks on it: SMTP URLs, proxy networks, CORS
origins, admin users, URLs and log levels; and the values the relays file gives (a relay's limits
and warm-up, the destination domain groups). No environment is read here: config.py reads it."""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated
from urllib.parse import unquote, urlsplit

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import AfterValidator

_ADMIN_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}\Z")


class SmtpSecurity(StrEnum):
    PLAIN = "plain"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    security: SmtpSecurity
    username: str | None
    password: str | None

    def describe(self) -> str:
        """The endpoint without the password, safe to log."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.security.value}://{user}{self.host}:{self.port}"


_SCHEMES = {
    "smtp": (SmtpSecurity.PLAIN, 25),
    "smtp+starttls": (SmtpSecurity.STARTTLS, 587),
    "smtps": (SmtpSecurity.TLS, 465),
}


def parse_smtp_url(url: str) -> SmtpEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"scheme must be one of {', '.join(sorted(_SCHEMES))} (for example smtp://127.0.0.1:1025)"
        )
    if not parts.hostname:
        raise ValueError("a host is required, for example smtp+starttls://user:pass@mail.example.org:587")
    security, default_port = _SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError as error:
        raise ValueError(f"the port is not a number between 1 and 65535 ({error})") from None
    return SmtpEndpoint(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def check_smtp_url(value: str) -> str:
    parse_smtp_url(value)
    return value


def check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL such as https://nurture.example.org")
    return value.rstrip("/")


def check_database_url(value: str) -> str:
    if not value.startswith(("sqlite", "postgresql")):
        raise ValueError(
            "must be sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname"
        )
    if value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_proxies(text: str) -> frozenset[str]:
    """Comma-separated addresses or CIDR networks, e.g. "127.0.0.1, 10.0.0.0/8"."""
    found = set()
    for item in _items(text):
        try:
            found.add(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"'{item[:60]}' is not an IP address or network such as 10.0.0.0/8") \
                from None
    return frozenset(found)


def parse_origins(text: str) -> tuple[str, ...]:
    """Comma-separated origins such as https://clinic.example.org (scheme, host, optional port)."""
    origins = []
    for item in _items(text):
        if item == "*":
            origins.append(item)
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise ValueError(f"'{item[:80]}' is not an origin; write scheme and host only, "
                             "e.g. https://clinic.example.org")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(origins)


def _admin_entries(text: str) -> list[list[str]]:
    entries: list[list[str]] = []
    for raw in text.split(","):
        piece = raw.strip()
        if not piece:
            continue
        name, sep, rest = piece.partition(":")
        if sep and rest.strip().startswith("$argon2"):
            entries.append([name.strip(), rest.strip()])
        elif not sep and entries:
            entries[-1][1] += "," + piece
        else:
            raise ValueError(f"'{piece[:24]}…' is not name:hash; make the hash with "
                             "`nurture admin hash-password`")
    return entries


def parse_admin_users(text: str) -> tuple[tuple[str, str], ...]:
    """`alice:$argon2id$...,bob:$argon2id$...`. Argon2 hashes hold commas themselves
    (`m=65536,t=3,p=4`), so a piece without `name:` continues the previous hash."""
    users: dict[str, str] = {}
    for name, password_hash in _admin_entries(text):
        if not _ADMIN_NAME.match(name):
            raise ValueError(f"'{name[:40]}' is not a user name: use 1 to 64 letters, digits or ._@+-")
        if name in users:
            raise ValueError(f"the user '{name}' is listed twice")
        try:
            extract_parameters(password_hash)
        except (InvalidHashError, ValueError):
            raise ValueError(f"the hash of '{name}' is not an argon2 hash; make one with "
                             "`nurture admin hash-password`") from None
        users[name] = password_hash
    return tuple(users.items())


ADMIN_ROLES = ("viewer", "editor", "admin")


def parse_admin_roles(text: str) -> tuple[tuple[str, str], ...]:
    """`alice:admin,bob:editor`: each user's role in the admin pages."""
    roles: dict[str, str] = {}
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        name, _, role = piece.partition(":")
        name, role = name.strip(), role.strip().lower()
        if role not in ADMIN_ROLES:
            raise ValueError(f"'{piece[:60]}': the role must be one of {', '.join(ADMIN_ROLES)} "
                             "(name:role)")
        if name in roles:
            raise ValueError(f"the user '{name}' has two roles")
        roles[name] = role
    return tuple(roles.items())


def check_log_level(value: str) -> str:
    level = value.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def check_finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(check_finite)]


# -- relays' limits and destination groups (the relays file) ---------------------------------------


@dataclass(frozen=True)
class Warmup:
    """A new relay's or IP's cap for each day since `start`: day 1 is `daily[0]`. Before `start`
    the first day's cap holds; after the list, the relay's own daily limit (if any)."""

    start: date
    daily: tuple[int, ...]

    def cap(self, day: date) -> int | None:
        index = max(0, (day - self.start).days)
        return self.daily[index] if index < len(self.daily) else None


@dataclass(frozen=True)
class RelayLimits:
    per_second: float | None = None
    per_minute: float | None = None
    per_hour: float | None = None
    per_day: int | None = None
    warmup: Warmup | None = None

    @property
    def any(self) -> bool:
        return any(value is not None for value in (
            self.per_second, self.per_minute, self.per_hour, self.per_day, self.warmup))

    @property
    def capped(self) -> bool:
        """It has a daily cap (a limit per day, or a warm-up)."""
        return self.per_day is not None or self.warmup is not None

    def day_cap(self, day: date) -> int | None:
        """The most this relay may send on `day`: the warm-up's cap or the daily limit, the lower."""
        caps = [cap for cap in (self.per_day, self.warmup.cap(day) if self.warmup else None)
                if cap is not None]
        return min(caps) if caps else None

    def describe(self) -> str:
        parts = [f"{value:g}/{unit}" for unit, value in (
            ("s", self.per_second), ("min", self.per_minute), ("h", self.per_hour),
            ("day", self.per_day)) if value is not None]
        if self.warmup is not None:
            parts.append(f"warm-up from {self.warmup.start.isoformat()} over "
                         f"{len(self.warmup.daily)} days")
        return ", ".join(parts)


@dataclass(frozen=True)
class DomainGroup:
    name: str
    domains: frozenset[str]
    per_second: float | None = None
    """The group's rate for the whole deployment (the shared token store); None: no limit."""
    concurrency: int | None = None
    """Messages to the group with the relay at once, per process; None: as many as the sender
    holds, until the destination defers us."""


DEFAULT_GROUPS: tuple[DomainGroup, ...] = (
    DomainGroup("gmail", frozenset({"gmail.com", "googlemail.com"})),
    DomainGroup("yahoo", frozenset({"yahoo.com", "yahoo.co.uk", "yahoo.co.in", "yahoo.in",
                                    "ymail.com", "rocketmail.com", "aol.com"})),
    DomainGroup("outlook", frozenset({"outlook.com", "hotmail.com", "hotmail.co.uk", "live.com",
                                      "msn.com", "outlook.in"})),
)


def with_defaults(groups: Iterable[DomainGroup]) -> tuple[DomainGroup, ...]:
    """The operator's groups, then the default groups they do not replace (by name) and whose
    domains they do not take."""
    own = tuple(groups)
    names = {group.name for group in own}
    taken = {domain for group in own for domain in group.domains}
    return own + tuple(
        DomainGroup(group.name, group.domains - taken, group.per_second, group.concurrency)
        for group in DEFAULT_GROUPS if group.name not in names and group.domains - taken)
