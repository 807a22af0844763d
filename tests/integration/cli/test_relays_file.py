"""`nurture config check` with a relays file: the relays shown without their passwords, and each
mistake in the file refused with exit 2, naming the variable, the file, the relay and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import nurture

GOOD = """\
strategy: weighted
relays:
  - name: ses
    url: smtp+starttls://AKIAEXAMPLE:s3cret-password@email-smtp.eu-west-1.amazonaws.com:587
    weight: 3
  - name: backup
    url: smtp://127.0.0.1:2525
"""


def test_config_check_shows_each_relay_s_connections_limits_and_warm_up(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    relays = tmp_path / "relays.yaml"
    relays.write_text(GOOD.replace("    weight: 3\n", "    weight: 3\n    connections: 4\n"
                                   "    limits: {per_second: 14, per_day: 50000}\n"
                                   "    warmup: {start: 2026-12-01, daily: [200, 500, 1000]}\n")
                      + "destinations:\n  - {name: gmail, domains: [gmail.com], per_second: 20}\n")
    result = nurture("config", "check", env=dict(cli_env, NURTURE_RELAYS_FILE=str(relays)))
    assert result.returncode == 0, result.stderr
    assert ("ses=starttls://AKIAEXAMPLE@email-smtp.eu-west-1.amazonaws.com:587 (weight 3) x4 "
            "[14/s, 50000/day, warm-up from 2026-12-01 over 3 days]") in result.stdout


def test_config_check_shows_the_relays_without_passwords(cli_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    relays = tmp_path / "relays.yaml"
    relays.write_text(GOOD)
    result = nurture("config", "check", env=dict(cli_env, NURTURE_RELAYS_FILE=str(relays)))
    assert result.returncode == 0, result.stderr
    assert (f"relays ({relays}) weighted: ses=starttls://AKIAEXAMPLE@email-smtp.eu-west-1."
            "amazonaws.com:587 (weight 3), backup=plain://127.0.0.1:2525 (weight 1)") in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("strategy: random\nrelays:\n  - name: a\n    url: smtp://h:25\n",
     "`strategy` must be failover or weighted"),
    ("relays: []\n", "`relays` must list at least one relay"),
    ("relays:\n  - name: a\n    url: http://h\n", "relay 'a': its url is not usable: scheme must be"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n  - name: a\n    url: smtp://g:25\n",
     "relay 2: the name 'a' is taken"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    weight: 0\n", "`weight` must be a number above 0"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    password: x\n", "give `name`, `url` and optionally"),
    ("relays: [\n", "this is not valid YAML"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    limits: {per_week: 5}\n",
     "relay 'a': `limits` takes per_second, per_minute, per_hour, per_day"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    limits: {per_day: 2.5}\n",
     "relay 'a': `limits.per_day` must be a whole number above 0"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    connections: 40\n",
     "relay 'a': `connections` is at most 16"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    warmup: {start: 2026-12-01}\n",
     "relay 'a': `warmup` needs `start` (a date) and `daily`"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    warmup: {start: soon, daily: [5]}\n",
     "relay 'a': `warmup.start` must be a date like 2026-12-01"),
    ("relays:\n  - name: a\n    url: smtp://h:25\n    warmup: {start: 2026-12-01, daily: [5, 0]}\n",
     "relay 'a': `warmup.daily` must be a whole number above 0"),
    ("relays:\n  - name: a\n    url: smtp://h:25\ndestinations:\n  - name: gmail\n",
     "destination 1: give `name`, `domains` and optionally `per_second` and `concurrency`"),
    ("relays:\n  - name: a\n    url: smtp://h:25\ndestinations:\n  - name: gmail\n"
     "    domains: [gmail]\n", "destination 'gmail': `domains` must list domain names"),
    ("relays:\n  - name: a\n    url: smtp://h:25\ndestinations:\n  - name: gmail\n"
     "    domains: [gmail.com]\n    concurrency: 0\n",
     "destination 'gmail': `concurrency` must be a whole number above 0"),
])
def test_each_mistake_in_the_relays_file_is_refused_with_its_fix(
        cli_env: dict[str, str], tmp_path: Path, text: str, expected: str) -> None:
    relays = tmp_path / "relays.yaml"
    relays.write_text(text)
    result = nurture("config", "check", env=dict(cli_env, NURTURE_RELAYS_FILE=str(relays)))
    assert result.returncode == 2
    assert "NURTURE_RELAYS_FILE" in result.stderr and str(relays) in result.stderr
    assert expected in result.stderr, result.stderr
