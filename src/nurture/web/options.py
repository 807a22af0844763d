"""The web app's options, taken from the settings: link lifetimes, proxies, CORS and signup limits."""

from __future__ import annotations

from dataclasses import dataclass

from nurture.config import Settings


@dataclass(frozen=True)
class WebOptions:
    """Web settings. The rate limits are counted in memory by each web process separately."""

    confirm_max_age_seconds: int = 7 * 24 * 3600
    quiet_link_max_age_seconds: int = 183 * 24 * 3600
    """How long the quiet links of an email ("we booked a call", "my partner said yes", "I've
    started on my own") work: long after the sequence, but not for ever in a forwarded email."""
    resend_interval_seconds: int = 600
    trusted_proxies: frozenset[str] = frozenset()
    """IP addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For is believed."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the JSON API from a browser, e.g. https://clinic.example.org."""
    signup_per_ip_per_hour: int = 20
    signup_per_address_per_hour: int = 5
    form_version: str = "v1"

    @classmethod
    def from_settings(cls, settings: Settings) -> WebOptions:
        return cls(
            confirm_max_age_seconds=settings.confirm_max_age_seconds,
            resend_interval_seconds=settings.resend_interval_seconds,
            trusted_proxies=settings.trusted_proxies,
            cors_origins=settings.cors_origins,
            signup_per_ip_per_hour=settings.signup_per_ip_per_hour,
            signup_per_address_per_hour=settings.signup_per_address_per_hour,
        )
