"""Operators' commands: `nurture config check` shows the effective settings with secrets masked."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nurture.config import Settings

# Variables read outside `Settings` by the part that uses them; `config check` shows them too and
# a test keeps this list in step with the source.
EXTRA_VARIABLES: dict[str, str] = {
    "NURTURE_LOG_LEVEL": "log level of the services (INFO, WARNING, ...)",
    "NURTURE_CONFIRM_MAX_AGE_SECONDS": "how long a confirmation link works (default 7 days)",
    "NURTURE_RESEND_INTERVAL_SECONDS": "at most one confirmation email per address per interval",
    "NURTURE_TRUSTED_PROXIES": "proxies whose X-Forwarded-For is believed (comma separated)",
    "NURTURE_CORS_ORIGINS": "sites allowed to call the JSON signup API (comma separated)",
    "NURTURE_SIGNUP_PER_IP_PER_HOUR": "signups per client address per hour, per web process",
    "NURTURE_SIGNUP_PER_ADDRESS_PER_HOUR": "signups per email address per hour, per web process",
    "NURTURE_RATE_PER_SECOND": "emails per second for the whole deployment (shared out)",
    "NURTURE_RATE_PER_MINUTE": "emails per minute for the whole deployment (shared out)",
    "NURTURE_SCHEDULER_PROCESSES": "how many scheduler processes share the rate limits",
    "NURTURE_BREAKER_FAILURES": "consecutive relay failures that open the circuit breaker",
    "NURTURE_BREAKER_COOLDOWN_SECONDS": "first pause before trying a failing relay again",
    "NURTURE_BREAKER_MAX_COOLDOWN_SECONDS": "longest pause before trying a failing relay again",
    "NURTURE_ADMIN_USERS": "admin logins: name:argon2-hash, comma separated",
}
SECRET_FIELDS = frozenset({"secret_key"})


def known_variables() -> set[str]:
    return {f"NURTURE_{name.upper()}" for name in Settings.model_fields} | set(EXTRA_VARIABLES)


def _mask_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def masked_settings(settings: Settings) -> dict[str, str]:
    shown: dict[str, str] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        text = str(value.value if hasattr(value, "value") else value)
        if name in SECRET_FIELDS:
            text = "***" if text else "(empty)"
        elif name.endswith("_url") or name == "database_url":
            text = _mask_url(text)
        shown[f"NURTURE_{name.upper()}"] = text
    for name in EXTRA_VARIABLES:
        raw = os.environ.get(name)
        if raw is None:
            continue
        shown[name] = "***" if name == "NURTURE_ADMIN_USERS" else raw
    return shown


def cmd_config_check(settings: Settings, args: Any) -> int:
    for name, value in sorted(masked_settings(settings).items()):
        sys.stdout.write(f"{name}={value}\n")
    unknown = sorted(name for name in os.environ
                     if name.startswith("NURTURE_") and name not in known_variables()
                     and not name.startswith(("NURTURE_TEST_", "NURTURE_REQUIRE_", "NURTURE_UPDATE_")))
    for name in unknown:
        sys.stdout.write(f"warning: {name} is not a setting nurture knows; check its spelling\n")
    sys.stdout.write(f"settings are valid ({settings.environment.value} mode)\n")
    return 0


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="settings")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    actions.add_parser("check", help="print the effective settings (secrets masked); exit 2 on a "
                       "bad one").set_defaults(handler=cmd_config_check)
