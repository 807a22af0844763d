"""The scheduler service as a real process: it sends what is due on its ticks and stops cleanly;
and in this process, on a clock passed in."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from nurture.config import load_settings
from nurture.domain.people import make_person
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.scheduler.service import SchedulerService
from nurture.services.runtime import runtime_from
from nurture.store.database import make_engine, upgrade
from nurture.store.operations import heartbeats
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.paths import ROOT
from tests.support.schedulers import copy_content, scheduler_env

SAMPLE = (ROOT / "sequences", ROOT / "templates")


def _env(tmp_path: Path, smtp_port: int, content_dirs: tuple[Path, Path] = SAMPLE) -> dict[str, str]:
    return scheduler_env(f"sqlite:///{tmp_path / 'sched.db'}", smtp_port, content_dirs)


def _wait_for_exit(process: subprocess.Popen[str], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_scheduler_sends_due_mail_and_stops_on_sigterm(tmp_path: Path, smtp_server: Any) -> None:
    # A copy of the sample whose window is the whole day, so the real clock's hour does not matter.
    env = _env(tmp_path, smtp_server.port, copy_content(tmp_path / "content", all_day=True))
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


def test_the_service_runs_its_jobs_on_the_clock_it_is_given(tmp_path: Path,
                                                           smtp_server: Any) -> None:
    """No wall clock in the service: the heartbeat, the send and the stop carry the clock's time,
    here a Monday 10:00 in London, inside the sample's send window whatever the real hour."""
    url = f"sqlite:///{tmp_path / 'clock.db'}"
    upgrade(url)
    settings = load_settings(database_url=url, smtp_url=f"smtp://127.0.0.1:{smtp_server.port}",
                             sequences_dir=ROOT / "sequences", templates_dir=ROOT / "templates")
    runtime = runtime_from(settings, content_rules=True)
    person = make_person("sam@example.org", "Sam", "Europe/London", ["stigma"])
    enroll(runtime.store, runtime.content.current, [person], "sample",
           ConsentRecord(kind="operator", source="test"), T0)
    now = [T0]
    service = SchedulerService(runtime, clock=lambda: now[0])
    now[0] = T0 + timedelta(seconds=5)
    service.dispatch.run()
    now[0] = T0 + timedelta(seconds=6)
    service.stop()

    assert [m.recipients for m in smtp_server.messages] == [("sam@example.org",)]
    (welcome,) = [d for d in runtime.store.deliveries_for("sam@example.org")
                  if d.step_key == "welcome"]
    assert welcome.sent_at is not None
    assert timedelta(0) <= welcome.sent_at - (T0 + timedelta(seconds=5)) < timedelta(seconds=5)
    (process,) = heartbeats(runtime.engine)
    assert (process.started_at, process.last_tick_at, process.stopped_at) == (
        T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=6))
    assert (process.ticks, process.sent) == (1, 1)
