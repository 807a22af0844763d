"""Settings are read from the environment in one place, and a bad value names its variable."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from nurture.config import SettingsError, load_settings, unknown_variables, variable_name
from nurture.engine.shared_rate import SharedRateLimiter
from nurture.services.runtime import throttle_from
from nurture.setting_values import parse_admin_users
from nurture.store.database import make_engine
from nurture.web.admin.auth import AdminOptions
from nurture.web.options import WebOptions

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("NURTURE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))  # no .env file here


def test_web_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "NURTURE_CONFIRM_MAX_AGE_SECONDS": "3600",
        "NURTURE_RESEND_INTERVAL_SECONDS": "0",
        "NURTURE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
        "NURTURE_CORS_ORIGINS": "https://clinic.example.org/, http://localhost:3000",
        "NURTURE_SIGNUP_PER_IP_PER_HOUR": "7",
        "NURTURE_SIGNUP_PER_ADDRESS_PER_HOUR": "2",
    }.items():
        monkeypatch.setenv(name, value)
    assert WebOptions.from_settings(load_settings()) == WebOptions(
        confirm_max_age_seconds=3600, resend_interval_seconds=0,
        trusted_proxies=frozenset({"127.0.0.1/32", "10.0.0.0/8"}),
        cors_origins=("https://clinic.example.org", "http://localhost:3000"),
        signup_per_ip_per_hour=7, signup_per_address_per_hour=2)


def test_defaults_give_the_default_options() -> None:
    settings = load_settings()
    assert WebOptions.from_settings(settings) == WebOptions()
    assert AdminOptions.from_settings(settings).enabled is False
    throttle = throttle_from(settings, make_engine("sqlite://"))
    assert throttle.limiter is None and throttle.breaker is not None


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("NURTURE_TRUSTED_PROXIES", "proxy.local", "is not an IP address"),
    ("NURTURE_CORS_ORIGINS", "https://a.example/path", "is not an origin"),
    ("NURTURE_SIGNUP_PER_IP_PER_HOUR", "0", "greater than or equal to 1"),
    ("NURTURE_CONFIRM_MAX_AGE_SECONDS", "7d", "valid integer"),
    ("NURTURE_RATE_PER_SECOND", "fast", "valid number"),
    ("NURTURE_RATE_PER_MINUTE", "-1", "greater than or equal to 0"),
    ("NURTURE_BREAKER_COOLDOWN_SECONDS", "inf", "finite"),
    ("NURTURE_BREAKER_MAX_COOLDOWN_SECONDS", "1", "at least NURTURE_BREAKER_COOLDOWN_SECONDS"),
    ("NURTURE_LOG_LEVEL", "loud", "DEBUG, INFO"),
    ("NURTURE_REPLY_TO", "Ana <ana@example.org>", "without a name"),
    ("NURTURE_REPLY_TO", "nobody", "one address"),
])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                        message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings()
    assert message in str(raised.value)
    assert "Value error" not in str(raised.value)


def test_relay_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"NURTURE_RATE_PER_SECOND": "12.5", "NURTURE_RATE_PER_MINUTE": "600",
                        "NURTURE_BREAKER_FAILURES": "0",
                        "NURTURE_BREAKER_COOLDOWN_SECONDS": " 15 "}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.rate_per_second, settings.rate_per_minute, settings.breaker_failures,
            settings.breaker_cooldown_seconds) == (12.5, 600, 0, 15)
    throttle = throttle_from(settings, make_engine("sqlite://"))
    assert throttle.breaker is None and isinstance(throttle.limiter, SharedRateLimiter)
    assert [(b.name, b.rate, b.capacity) for b in throttle.limiter.buckets] == \
        [("per-second", 12.5, 1.0), ("per-minute", 10.0, 24.0)]


def test_admin_users_are_parsed_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    first, other = FAST_HASHER.hash("a long enough passphrase"), FAST_HASHER.hash("another one here")
    assert "," in first, "argon2 hashes contain commas, which the parser must allow"
    assert parse_admin_users(f" asha:{first} , ops:{other} ") == (("asha", first), ("ops", other))
    monkeypatch.setenv("NURTURE_ADMIN_USERS", f"asha:{first}")
    assert AdminOptions.from_settings(load_settings()).password_hash("asha") == first
    for bad, message in (
        ("asha:plain-password", "is not name:hash"),
        ("asha:$argon2id$nonsense", "not an argon2 hash"),
        (f"asha:{first},asha:{other}", "listed twice"),
        (f"bad name:{first}", "is not a user name"),
    ):
        monkeypatch.setenv("NURTURE_ADMIN_USERS", bad)
        with pytest.raises(SettingsError, match="NURTURE_ADMIN_USERS") as raised:
            load_settings()
        assert message in str(raised.value)
        assert first not in str(raised.value)


def test_unknown_variables_are_the_misspelt_ones() -> None:
    assert unknown_variables({"NURTURE_SMTP_URL": "x", "NURTURE_SMPT_URL": "x",
                              "NURTURE_TEST_POSTGRES_URL": "x", "PATH": "/bin"}) == ["NURTURE_SMPT_URL"]
    assert variable_name("admin_users") == "NURTURE_ADMIN_USERS"


# -- placeholder links in the locale files ------------------------------------------------------

PRODUCTION = {
    "NURTURE_ENVIRONMENT": "production",
    "NURTURE_SECRET_KEY": "a-long-random-production-secret-0123456789",
    "NURTURE_BASE_URL": "https://notes.clinic.test",
    "NURTURE_DATA_KEYS": "a-data-key",
    "NURTURE_POSTAL_ADDRESS": "Clinic, 2 Real Road, Pune",
}


def _locale(booking_url: str, resource_url: str = "https://www.apa.org/") -> str:
    return ("crisis:\n  heading: Help\n  text: Call 112.\n  lines: []\n"
            f"resources:\n  - title: Ours\n    kind: guide\n    description: Our page.\n"
            f"    url: {resource_url}\n"
            f"booking:\n  url: {booking_url}\n  label: Choose a time\n")


@pytest.fixture
def templates(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> object:
    from pathlib import Path

    root = Path(str(tmp_path)) / "templates"
    (root / "locales").mkdir(parents=True)
    for name, value in {**PRODUCTION, "NURTURE_TEMPLATES_DIR": str(root)}.items():
        monkeypatch.setenv(name, value)
    return root


def test_production_refuses_the_placeholder_booking_link_naming_variable_and_file(
        templates: object) -> None:
    from pathlib import Path

    locales = Path(str(templates)) / "locales"
    (locales / "en.yaml").write_text(_locale("https://example.org/consult"), encoding="utf-8")
    (locales / "en-IN.yaml").write_text(_locale("https://book.clinic.test/"), encoding="utf-8")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "NURTURE_BOOKING_URL: production mode refuses it" in message
    assert f"{locales / 'en.yaml'}:11 booking.url is the placeholder https://example.org/consult" \
        in message
    assert "en-IN.yaml" not in message, "only the file with the placeholder is named"


def test_the_booking_variable_replaces_the_placeholder(templates: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    locales = Path(str(templates)) / "locales"
    (locales / "en.yaml").write_text(_locale("https://example.org/consult"), encoding="utf-8")
    monkeypatch.setenv("NURTURE_BOOKING_URL", "https://book.clinic.test/first-call")
    assert load_settings().booking_url == "https://book.clinic.test/first-call"
    monkeypatch.setenv("NURTURE_BOOKING_URL", "https://www.example.com/book")
    with pytest.raises(SettingsError, match="NURTURE_BOOKING_URL: production mode refuses it"):
        load_settings()


def test_production_refuses_a_placeholder_resource(templates: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    locales = Path(str(templates)) / "locales"
    (locales / "en.yaml").write_text(
        _locale("https://book.clinic.test/", "https://example.org/couples-therapy"), encoding="utf-8")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "NURTURE_TEMPLATES_DIR: production mode refuses it" in str(refused.value)
    assert f"{locales / 'en.yaml'}:9 resources[0].url" in str(refused.value)
    monkeypatch.setenv("NURTURE_ENVIRONMENT", "development")
    assert load_settings().templates_dir == Path(str(templates)), "development lets it through"


def test_the_shipped_locale_files_name_their_placeholders() -> None:
    from nurture.example_links import placeholder_links
    from tests.support.paths import ROOT

    found = {(link.path.name, link.what) for link in placeholder_links(ROOT / "templates")}
    assert found == {(name, what) for name in ("en.yaml", "en-IN.yaml", "hi-IN.yaml")
                     for what in ("booking.url", "resources[0].url")}
