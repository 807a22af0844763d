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
])
def test_each_mistake_in_the_relays_file_is_refused_with_its_fix(
        cli_env: dict[str, str], tmp_path: Path, text: str, expected: str) -> None:
    relays = tmp_path / "relays.yaml"
    relays.write_text(text)
    result = nurture("config", "check", env=dict(cli_env, NURTURE_RELAYS_FILE=str(relays)))
    assert result.returncode == 2
    assert "NURTURE_RELAYS_FILE" in result.stderr and str(relays) in result.stderr
    assert expected in result.stderr, result.stderr
