"""docker-compose.yml, Dockerfile and .env.example read and checked, since no Docker engine runs here."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from nurture.config import Settings, known_variables
from nurture.relay_settings import load_relays
from tests.support.cli import nurture
from tests.support.paths import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_compose_has_every_service() -> None:
    assert set(SERVICES) >= {"postgres", "migrate", "web", "scheduler", "mailpit"}
    assert SERVICES["scheduler"]["deploy"]["replicas"] == 2, "two schedulers show scale-out"
    assert "pgdata" in COMPOSE["volumes"]


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items()
                                        if str(s.get("command", [""])[0]) == "nurture"))
def test_each_nurture_command_is_real(name: str, cli_env: dict[str, str]) -> None:
    command = SERVICES[name]["command"]
    command = shlex.split(command) if isinstance(command, str) else command
    result = nurture(*command[1:], "--help", env=cli_env)
    assert result.returncode == 0, f"{name}: `{' '.join(command)}` is not a nurture command: " \
        f"{result.stderr}"
    assert result.stdout.startswith("usage: nurture")


def test_every_variable_the_compose_file_sets_is_known() -> None:
    known = known_variables()
    for name, service in SERVICES.items():
        for variable in (service.get("environment") or {}):
            if variable.startswith("NURTURE_"):
                assert variable in known, f"{name} sets {variable}, which no setting reads"


def test_every_nurture_service_logs_json() -> None:
    # A service's own `environment` replaces the shared one (YAML merge keys are shallow).
    for name, service in SERVICES.items():
        if str(service.get("command", [""])[0]) == "nurture":
            assert service["environment"].get("NURTURE_LOG_FORMAT") == "json", name


def test_healthchecks_and_start_order() -> None:
    for name in ("postgres", "web", "mailpit"):
        assert SERVICES[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "scheduler"):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    assert SERVICES["mailpit"]["ports"] == ["8025:8025"]
    for name in ("web", "scheduler", "migrate"):
        mounts = SERVICES[name]["volumes"]
        assert "./sequences:/app/sequences:ro" in mounts and "./templates:/app/templates:ro" in mounts


def test_the_schedulers_relays_file_names_the_compose_relays() -> None:
    scheduler = SERVICES["scheduler"]
    mount = next(m for m in scheduler["volumes"] if m.endswith(":/app/deploy/relays.yaml:ro"))
    plan = load_relays(ROOT / mount.split(":", 1)[0].removeprefix("./"))
    assert scheduler["environment"]["NURTURE_RELAYS_FILE"] == "/app/deploy/relays.yaml"
    assert [(r.name, r.endpoint.host) for r in plan.relays] == \
        [("mailpit", "mailpit"), ("mailpit-backup", "mailpit-backup")]
    for relay in plan.relays:
        assert relay.endpoint.host in SERVICES and relay.endpoint.host in scheduler["depends_on"]
    assert SERVICES["mailpit-backup"]["ports"] == ["8026:8025"]


def test_dockerfile_is_slim_non_root_and_locked() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1\d-slim", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.lock" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def _example_variables() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    example = _example_variables()
    assert set(example) == known_variables(), (
        f"missing: {sorted(known_variables() - set(example))}, "
        f"unknown: {sorted(set(example) - known_variables())}")


def test_env_example_values_are_valid(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if not k.startswith("NURTURE_")}
    env.update(_example_variables())
    result = nurture("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "NURTURE_SECRET_KEY=***" in result.stdout
    assert "dev-only-secret-key" not in result.stdout


def test_every_variable_read_in_the_source_is_known() -> None:
    found = set()
    for path in (ROOT / "src" / "nurture").rglob("*.py"):
        found |= set(re.findall(r"\"(NURTURE_[A-Z_]*[A-Z])\"", path.read_text()))
    assert found <= known_variables(), sorted(found - known_variables())
    assert {f"NURTURE_{n.upper()}" for n in Settings.model_fields} <= known_variables()


def test_config_check_masks_passwords_and_refuses_bad_values(cli_env: dict[str, str]) -> None:
    cli_env["NURTURE_SMTP_URL"] = "smtp+starttls://mailer:hunter2@relay.example.org:587"
    shown = nurture("config", "check", env=cli_env)
    assert shown.returncode == 0
    assert "hunter2" not in shown.stdout and "mailer:***@relay.example.org" in shown.stdout
    cli_env["NURTURE_ENVIRONMENT"] = "production"
    refused = nurture("config", "check", env=cli_env)
    assert refused.returncode == 2
    assert "NURTURE_SECRET_KEY: production mode refuses it" in refused.stderr
    assert "NURTURE_BASE_URL" not in refused.stderr or "https" in refused.stderr
