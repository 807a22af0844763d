"""Typed settings from `NURTURE_*` environment variables, with safe embedded defaults for one machine.

This is the only module that reads the environment: the web, admin, throttle and logging settings too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nurture.example_links import is_placeholder_url, placeholder_links, placeholder_problems
from nurture.relay_settings import RelayPlan, load_relays, single_relay
from nurture.setting_values import (
    FiniteFloat,
    SmtpEndpoint,
    check_base_url,
    check_database_url,
    check_log_level,
    check_smtp_url,
    parse_admin_roles,
    parse_admin_users,
    parse_origins,
    parse_proxies,
    parse_smtp_url,
)

DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me"
DEFAULT_POSTAL_ADDRESS = "Nurture, 1 Example Street, Example City"
ENV_PREFIX = "NURTURE_"
# Variables of the test suite and the benchmarks, not of the product: `config check` ignores them.
NOT_SETTINGS_PREFIXES = ("NURTURE_TEST_", "NURTURE_REQUIRE_", "NURTURE_UPDATE_")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


LogFormat = Literal["auto", "console", "json"]
ContentSource = Literal["files", "database"]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def check_relays_file(path: Path) -> Path:
    load_relays(path)  # a RelaysFileError is a ValueError: it names the file and the fix
    return path


class Settings(BaseSettings):
    """Every setting, read from the environment (prefix NURTURE_) or a `.env` file."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", env_file=".env", extra="ignore",
                                      env_ignore_empty=True)

    environment: Environment = Environment.DEVELOPMENT
    database_url: Annotated[str, AfterValidator(check_database_url)] = "sqlite:///var/nurture.db"
    smtp_url: Annotated[str, AfterValidator(check_smtp_url)] = "smtp://127.0.0.1:1025"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    smtp_connections: int = Field(default=1, ge=1, le=16, description="SMTP connections to the "
                                  "relay in each scheduler process (a relays file sets its own)")
    relays_file: Annotated[Path, AfterValidator(check_relays_file)] | None = Field(
        default=None, description="several relays with failover (docs/operations.md); "
        "NURTURE_SMTP_URL is then not used")
    base_url: Annotated[str, AfterValidator(check_base_url)] = "http://127.0.0.1:8000"
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, min_length=16)
    sender: str = "Nurture <hello@nurture.localhost>"
    # No rhythm in it: the emails do not come weekly, and a name should promise nothing it breaks.
    discreet_sender_name: str = "Notes for you"
    unsubscribe_mailto: str | None = None
    reply_to: str | None = Field(default=None, description="an inbox a person reads; emails then "
                                 "invite replies (Reply-To)")
    booking_url: Annotated[str, AfterValidator(check_base_url)] | None = None
    api_key: str | None = Field(default=None, min_length=24)
    feedback_webhook_secret: str | None = Field(default=None, min_length=24)
    data_keys: str | None = None
    postal_address: str = DEFAULT_POSTAL_ADDRESS
    sequences_dir: Path = Path("sequences")
    templates_dir: Path = Path("templates")
    content_source: ContentSource = Field(
        default="files", description="files: sequences/ and templates/ on each host; database: "
        "versions saved in the admin editor or imported, read by every host from the database")
    content_cache_dir: Path = Field(
        default=Path("var/content"), description="with NURTURE_CONTENT_SOURCE=database: where "
        "each process writes the live version's files to read them")
    tick_seconds: float = Field(default=5.0, gt=0, le=3600)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    lease_seconds: int = Field(default=300, ge=10, le=86_400)
    retry_base_seconds: int = Field(default=60, ge=1)
    retry_max_seconds: int = Field(default=6 * 3600, ge=1)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retention_days: int = Field(default=30, ge=1, le=3650)
    click_counting: bool = Field(
        default=False, description="count clicks on the links of an email's own body, per "
        "delivery, through first-party redirects (no pixel; kept for the retention period)")
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    mailcatcher_smtp_port: int = Field(default=1025, ge=1, le=65535)
    mailcatcher_http_port: int = Field(default=8025, ge=1, le=65535)
    outbox_dir: Path = Path("var/outbox")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    log_format: LogFormat = Field(
        default="auto", description="console for people, json for machines; auto: console when "
        "stderr is a terminal")
    log_level: Annotated[str, AfterValidator(check_log_level)] | None = Field(
        default=None, description="log level of the services (INFO, WARNING, ...)")
    # The web app. Rate limits are counted in memory by each web process separately.
    confirm_max_age_seconds: int = Field(default=7 * 24 * 3600, ge=1,
                                         description="how long a confirmation link works")
    resend_interval_seconds: int = Field(
        default=600, ge=0, description="at most one confirmation email per address per interval")
    trusted_proxies: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), description="proxies whose X-Forwarded-For is believed (comma separated)")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="sites allowed to call the JSON signup API (comma separated)")
    signup_per_ip_per_hour: int = Field(default=20, ge=1)
    signup_per_address_per_hour: int = Field(default=5, ge=1)
    admin_users: Annotated[tuple[tuple[str, str], ...], NoDecode] = Field(
        default=(), description="admin logins: name:argon2-hash, comma separated")
    admin_roles: Annotated[tuple[tuple[str, str], ...], NoDecode] = Field(
        default=(), description="name:role, comma separated; roles: viewer (previews and "
        "results), editor (edits content), admin (also sees users and the audit log); "
        "a user not listed is a viewer")
    # Relay limits for the whole deployment, shared out among the scheduler processes; 0: no limit.
    rate_per_second: FiniteFloat = Field(default=0.0, ge=0)
    rate_per_minute: FiniteFloat = Field(default=0.0, ge=0)
    breaker_failures: int = Field(default=5, ge=0, description="0 turns the circuit breaker off")
    breaker_cooldown_seconds: FiniteFloat = Field(default=30.0, gt=0)
    breaker_max_cooldown_seconds: FiniteFloat = Field(default=600.0, gt=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        return parse_proxies(value) if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return parse_origins(value) if isinstance(value, str) else value

    @field_validator("admin_roles", mode="before")
    @classmethod
    def _parse_admin_roles(cls, value: object) -> object:
        return parse_admin_roles(value) if isinstance(value, str) else value

    @field_validator("admin_roles", mode="after")
    @classmethod
    def _roles_name_users(cls, value: tuple[tuple[str, str], ...],
                          info: ValidationInfo) -> tuple[tuple[str, str], ...]:
        users = {name for name, _ in info.data.get("admin_users", ())}
        unknown = [name for name, _ in value if name not in users]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not in NURTURE_ADMIN_USERS: give each a "
                             "login there, or remove the role")
        return value

    def admin_role(self, name: str) -> str:
        """The user's role in the admin pages: viewer unless NURTURE_ADMIN_ROLES says more."""
        return dict(self.admin_roles).get(name, "viewer")

    @field_validator("admin_users", mode="before")
    @classmethod
    def _parse_admin_users(cls, value: object) -> object:
        return parse_admin_users(value) if isinstance(value, str) else value

    @field_validator("breaker_max_cooldown_seconds")
    @classmethod
    def _cooldowns_in_order(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("breaker_cooldown_seconds")
        if first is not None and value < first:
            raise ValueError("must be at least NURTURE_BREAKER_COOLDOWN_SECONDS")
        return value

    @field_validator("sender")
    @classmethod
    def _sender_has_address(cls, value: str) -> str:
        from email.utils import parseaddr

        if any(ch in value for ch in "\r\n"):
            raise ValueError("must be on one line")
        _, address = parseaddr(value)
        if "@" not in address:
            raise ValueError('must be an address, optionally with a name: "Name <hello@example.org>"')
        return value

    @field_validator("reply_to")
    @classmethod
    def _reply_to_is_an_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        address = value.strip()
        if any(ch in address for ch in "\r\n<>,; ") or address.count("@") != 1:
            raise ValueError("must be one address such as replies@example.org, without a name")
        return address

    @field_validator("postal_address")
    @classmethod
    def _postal_address_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is required by anti-spam law in most countries; give the sender's address")
        return value

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.environment is not Environment.PRODUCTION:
            return self
        problems = []
        if self.secret_key == DEFAULT_SECRET_KEY:
            problems.append("secret_key: set a long random value (the default is public)")
        if not self.base_url.startswith("https://"):
            problems.append("base_url: must be https:// in production (one-click unsubscribe and "
                            "tokens travel in it)")
        if not self.data_keys:
            problems.append("data_keys: set a key for names and answers at rest (make one with "
                            "`nurture db new-data-key`)")
        if self.postal_address == DEFAULT_POSTAL_ADDRESS:
            problems.append("postal_address: give the sender's real postal address")
        if self.booking_url is not None and is_placeholder_url(self.booking_url):
            problems.append("booking_url: give your own page for choosing a time, not an example")
        problems += placeholder_problems(placeholder_links(self.templates_dir),
                                         booking_url_set=self.booking_url is not None)
        if problems:
            raise ValueError("production mode refuses: " + "; ".join(problems))
        return self

    @property
    def smtp(self) -> SmtpEndpoint:
        return parse_smtp_url(self.smtp_url)

    @property
    def relays(self) -> RelayPlan:
        """The relays file's relays, or the one NURTURE_SMTP_URL names."""
        if self.relays_file is not None:
            return load_relays(self.relays_file)
        return single_relay(self.smtp, self.smtp_connections)

    @property
    def sender_address(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.sender)[1]

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rsplit("@", 1)[1]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            if problem["loc"]:
                name = "NURTURE_" + "_".join(str(part) for part in problem["loc"]).upper()
                lines.append(f"{name}: {str(problem['msg']).removeprefix('Value error, ')}")
            else:
                message = str(problem["msg"]).removeprefix("Value error, ")
                for part in message.removeprefix("production mode refuses: ").split("; "):
                    field, _, why = part.partition(": ")
                    lines.append(f"NURTURE_{field.upper()}: production mode refuses it: {why}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def variable_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def known_variables() -> set[str]:
    return {variable_name(name) for name in Settings.model_fields}


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """`NURTURE_*` variables that are set but name no setting: most likely a spelling mistake."""
    env = os.environ if environ is None else environ
    known = known_variables()
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known
                  and not name.startswith(NOT_SETTINGS_PREFIXES))


def environment_for_children(**overrides: str) -> dict[str, str]:
    """This process's environment for the services it starts; `overrides` fill unset variables only."""
    env = dict(os.environ)
    for name, value in overrides.items():
        env.setdefault(name, value)
    return env



def terminal_allows_colour() -> bool:
    """Whether a terminal may be coloured: not when NO_COLOR is set (https://no-color.org) or
    TERM is dumb. Whether the output is a terminal at all is the caller's question."""
    return "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb"
