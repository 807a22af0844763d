"""The scheduler service as a real process: it sends what is due on its ticks and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from nurture.store.database import make_engine, upgrade
from nurture.store.repository import SqlStore

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update({
        "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'sched.db'}",
        "NURTURE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NURTURE_SEQUENCES_DIR": str(ROOT / "sequences"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_TICK_SECONDS": "0.2",
        "NURTURE_LOG_LEVEL": "INFO",
    })
    return env


def _wait_for_exit(process: subprocess.Popen[str], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_scheduler_sends_due_mail_and_stops_on_sigterm(tmp_path: Path, smtp_server: Any) -> None:
    env = _env(tmp_path, smtp_server.port)
    # A copy of the sample whose window is the whole day, so the real clock's hour does not matter.
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    sample = (ROOT / "sequences" / "sample.yaml").read_text()
    (sequences / "sample.yaml").write_text(sample.replace('hours: "09:00-20:00"', 'hours: "00:00-24:00"'))
    env["NURTURE_SEQUENCES_DIR"] = str(sequences)
    upgrade(env["NURTURE_DATABASE_URL"])
    # Enrolled with the real clock: the scheduler is the one component that reads it.
    enrolled = subprocess.run(
        [sys.executable, "-m", "nurture", "enroll", "sam@example.org", "--sequence", "sample",
         "--time-zone", "UTC"], env=env, capture_output=True, text=True, check=False)
    assert enrolled.returncode == 0, enrolled.stderr
    store = SqlStore(make_engine(env["NURTURE_DATABASE_URL"]))
    process = subprocess.Popen([sys.executable, "-m", "nurture", "scheduler"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        smtp_server.wait_for(1, timeout=30)
        assert smtp_server.messages[0].recipients == ("sam@example.org",)
    finally:
        process.send_signal(signal.SIGTERM)
        code = _wait_for_exit(process, timeout=30)
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    assert '"scheduler stopped"' in stderr
    assert "sam@example.org" not in stderr, "logs hold no addresses"
    statuses = [d.status.value for d in store.deliveries_for("sam@example.org")]
    assert statuses.count("sent") == 1 and "sending" not in statuses


def test_second_scheduler_on_one_sqlite_file_waits(tmp_path: Path, smtp_server: Any) -> None:
    env = _env(tmp_path, smtp_server.port)
    upgrade(env["NURTURE_DATABASE_URL"])
    first = subprocess.Popen([sys.executable, "-m", "nurture", "scheduler"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if "scheduler started" in line:
                break
        second = subprocess.Popen([sys.executable, "-m", "nurture", "scheduler"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert second.stderr is not None
        for line in second.stderr:
            if "another scheduler uses this SQLite database; waiting" in line:
                break
        else:
            raise AssertionError("the second scheduler did not say that it waits")
    finally:
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        assert _wait_for_exit(first, timeout=30) == 0
        if second is not None:
            # The waiting one gets the lock once the first exits, then stops on its SIGTERM.
            assert _wait_for_exit(second, timeout=30) == 0
