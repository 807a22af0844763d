"""Running the `nurture` command as a subprocess with a clean NURTURE_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT


def clean_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any NURTURE_* variable of its own, plus `settings`: a
    child sees only the settings its test chose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(settings)
    return env


def nurture(*args: str, env: dict[str, str], cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nurture", *args], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def cli_settings(database: Path, smtp_port: int) -> dict[str, str]:
    """The environment of a `nurture` command on a SQLite file, sending to a loopback SMTP server,
    with the repository's content."""
    return clean_env({
        "NURTURE_DATABASE_URL": f"sqlite:///{database}",
        "NURTURE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NURTURE_SEQUENCES_DIR": str(ROOT / "sequences"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_SENDER": "Nurture <hello@nurture.test>",
    })


@pytest.fixture
def cli_env(tmp_path: Path, smtp_server: Any) -> dict[str, str]:
    return cli_settings(tmp_path / "cli.db", smtp_server.port)


def write_csv(path: Path, count: int) -> Path:
    """An import file of `count` made-up people, in the columns `enroll --from-csv` reads."""
    rows = [f"person{i}@example.org,P{i},Europe/London,stigma" for i in range(count)]
    path.write_text("email,first_name,time_zone,hesitations\n" + "\n".join(rows) + "\n")
    return path
