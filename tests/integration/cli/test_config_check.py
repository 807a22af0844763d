"""`nurture config check` and the services in production refuse the placeholder links shipped in
the locale files, naming the variable that replaces them and the file and line that hold them."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.cli import nurture
from tests.support.paths import ROOT

PRODUCTION = {
    "NURTURE_ENVIRONMENT": "production",
    "NURTURE_SECRET_KEY": "a-long-random-production-secret-0123456789",
    "NURTURE_DATA_KEYS": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
    "NURTURE_POSTAL_ADDRESS": "Clinic, 2 Real Road, Pune",
}


def _own_templates(tmp_path: Path) -> Path:
    """The shipped templates with the practice's own page in place of the resource placeholder."""
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    for path in (root / "locales").glob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8").replace(
            "https://example.org/couples-therapy", "https://clinic.test/couples"), encoding="utf-8")
    return root


def test_production_config_check_and_service_start_refuse_the_placeholder_booking_link(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    cli_env.update(PRODUCTION, NURTURE_TEMPLATES_DIR=str(_own_templates(tmp_path)))
    english = tmp_path / "templates" / "locales" / "en.yaml"
    line = english.read_text(encoding="utf-8").splitlines().index(
        "  url: https://example.org/consult") + 1
    for command in (("config", "check"), ("web",), ("scheduler",)):
        refused = nurture(*command, env=cli_env, timeout=60)
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert "NURTURE_BOOKING_URL: production mode refuses it" in refused.stderr
        assert f"{english}:{line} booking.url is the placeholder" in refused.stderr
        assert "NURTURE_TEMPLATES_DIR" not in refused.stderr

    cli_env["NURTURE_BOOKING_URL"] = "https://book.clinic.test/first-call"
    accepted = nurture("config", "check", env=cli_env)
    assert accepted.returncode == 0, accepted.stderr
    assert "settings are valid (production mode)" in accepted.stdout


def test_production_refuses_the_practice_page_placeholder(cli_env: dict[str, str]) -> None:
    cli_env.update(PRODUCTION, NURTURE_BOOKING_URL="https://book.clinic.test/first-call")
    refused = nurture("config", "check", env=cli_env)
    assert refused.returncode == 2
    assert "NURTURE_TEMPLATES_DIR: production mode refuses it" in refused.stderr
    assert "resources[0].url is the placeholder https://example.org/couples-therapy" \
        in refused.stderr


def test_development_warns_before_going_live(cli_env: dict[str, str]) -> None:
    shown = nurture("config", "check", env=cli_env)
    assert shown.returncode == 0
    assert "warning: NURTURE_BOOKING_URL: production mode will refuse this" in shown.stdout
    assert "settings are valid (development mode)" in shown.stdout
