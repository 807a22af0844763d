"""Options of the web app read from `NURTURE_*` environment variables (to move into Settings later)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from nurture.config import SettingsError

T = TypeVar("T")

ENV_CONFIRM_MAX_AGE = "NURTURE_CONFIRM_MAX_AGE_SECONDS"
ENV_RESEND_INTERVAL = "NURTURE_RESEND_INTERVAL_SECONDS"
ENV_TRUSTED_PROXIES = "NURTURE_TRUSTED_PROXIES"
ENV_CORS_ORIGINS = "NURTURE_CORS_ORIGINS"
ENV_PER_IP = "NURTURE_SIGNUP_PER_IP_PER_HOUR"
ENV_PER_ADDRESS = "NURTURE_SIGNUP_PER_ADDRESS_PER_HOUR"


@dataclass(frozen=True)
class WebOptions:
    """Web settings. The rate limits are counted in memory by each web process separately."""

    confirm_max_age_seconds: int = 7 * 24 * 3600
    resend_interval_seconds: int = 600
    trusted_proxies: frozenset[str] = frozenset()
    """IP addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For is believed."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the JSON API from a browser, e.g. https://clinic.example.org."""
    signup_per_ip_per_hour: int = 20
    signup_per_address_per_hour: int = 5
    form_version: str = "v1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebOptions:
        """Options from the environment; a bad value raises SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            confirm_max_age_seconds=_read(env, ENV_CONFIRM_MAX_AGE, _positive_int,
                                          defaults.confirm_max_age_seconds),
            resend_interval_seconds=_read(env, ENV_RESEND_INTERVAL, _non_negative_int,
                                          defaults.resend_interval_seconds),
            trusted_proxies=_read(env, ENV_TRUSTED_PROXIES, parse_proxies, defaults.trusted_proxies),
            cors_origins=_read(env, ENV_CORS_ORIGINS, parse_origins, defaults.cors_origins),
            signup_per_ip_per_hour=_read(env, ENV_PER_IP, _positive_int,
                                         defaults.signup_per_ip_per_hour),
            signup_per_address_per_hour=_read(env, ENV_PER_ADDRESS, _positive_int,
                                              defaults.signup_per_address_per_hour),
        )


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return parse(raw.strip())
    except ValueError as error:
        raise SettingsError(f"invalid settings:\n  {name}: {error}") from None


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a whole number") from None
    if value < 0:
        raise ValueError("must not be negative")
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
