"""Typed settings from `NURTURE_*` environment variables, with safe embedded defaults for one machine."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me"
DEFAULT_POSTAL_ADDRESS = "Nurture, 1 Example Street, Example City"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


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


def _check_smtp_url(value: str) -> str:
    parse_smtp_url(value)
    return value


def _check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL such as https://nurture.example.org")
    return value.rstrip("/")


def _check_database_url(value: str) -> str:
    if not value.startswith(("sqlite", "postgresql")):
        raise ValueError(
            "must be sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname"
        )
    if value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every setting, read from the environment (prefix NURTURE_) or a `.env` file."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", env_file=".env", extra="ignore",
                                      env_ignore_empty=True)

    environment: Environment = Environment.DEVELOPMENT
    database_url: Annotated[str, AfterValidator(_check_database_url)] = "sqlite:///var/nurture.db"
    smtp_url: Annotated[str, AfterValidator(_check_smtp_url)] = "smtp://127.0.0.1:1025"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    base_url: Annotated[str, AfterValidator(_check_base_url)] = "http://127.0.0.1:8000"
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, min_length=16)
    sender: str = "Nurture <hello@nurture.localhost>"
    discreet_sender_name: str = "Weekly notes"
    unsubscribe_mailto: str | None = None
    booking_url: Annotated[str, AfterValidator(_check_base_url)] | None = None
    api_key: str | None = Field(default=None, min_length=24)
    feedback_webhook_secret: str | None = Field(default=None, min_length=24)
    data_keys: str | None = None
    postal_address: str = DEFAULT_POSTAL_ADDRESS
    sequences_dir: Path = Path("sequences")
    templates_dir: Path = Path("templates")
    tick_seconds: float = Field(default=5.0, gt=0, le=3600)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    lease_seconds: int = Field(default=300, ge=10, le=86_400)
    retry_base_seconds: int = Field(default=60, ge=1)
    retry_max_seconds: int = Field(default=6 * 3600, ge=1)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retention_days: int = Field(default=30, ge=1, le=3650)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    mailcatcher_smtp_port: int = Field(default=1025, ge=1, le=65535)
    mailcatcher_http_port: int = Field(default=8025, ge=1, le=65535)
    outbox_dir: Path = Path("var/outbox")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)

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
        if problems:
            raise ValueError("production mode refuses: " + "; ".join(problems))
        return self

    @property
    def smtp(self) -> SmtpEndpoint:
        return parse_smtp_url(self.smtp_url)

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
                lines.append(f"{name}: {problem['msg']}")
            else:
                message = str(problem["msg"]).removeprefix("Value error, ")
                for part in message.removeprefix("production mode refuses: ").split("; "):
                    field, _, why = part.partition(": ")
                    lines.append(f"NURTURE_{field.upper()}: production mode refuses it: {why}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
