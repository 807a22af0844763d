"""`nurture scheduler` as real processes: their environment, a copy of the sample content whose
send window may be the whole day, and a group of schedulers started, killed and stopped by a test."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.clock import utcnow
from nurture.content.library import load_content
from nurture.domain.people import make_person
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.store.sql.store import SqlStore
from tests.support.cli import clean_env
from tests.support.dispatchers import SENDER
from tests.support.paths import ROOT


def copy_content(target: Path, *, all_day: bool) -> tuple[Path, Path]:
    """The sample and system sequences with their templates: stable while others edit content.
    `all_day`: processes run on the real clock, whose hour must not matter."""
    sequences, templates = target / "sequences", target / "templates"
    sequences.mkdir(parents=True)
    for name in ("sample.yaml", "system.yaml"):
        text = (ROOT / "sequences" / name).read_text()
        if all_day:
            text = text.replace('hours: "09:00-20:00"', 'hours: "00:00-24:00"')
        (sequences / name).write_text(text)
    for part in ("layouts", "locales", "emails/partials", "emails/sample", "emails/system"):
        shutil.copytree(ROOT / "templates" / part, templates / part)
    return sequences, templates


def enroll_due(store: SqlStore, dirs: tuple[Path, Path], count: int, prefix: str) -> None:
    """`count` people in the sample sequence of `dirs` (UTC), their welcome due a second ago on
    the real clock, the schedulers' own."""
    people = [make_person(f"{prefix}{index}@example.org", time_zone="UTC") for index in range(count)]
    enroll(store, load_content(*dirs), people, "sample",
           ConsentRecord(kind="operator", source="test"), utcnow() - timedelta(seconds=1))


def relays_file(path: Path, strategy: str = "failover", **urls: str) -> Path:
    """A relays file naming `urls` (relay name to URL) in their order."""
    path.write_text(f"strategy: {strategy}\nrelays:\n" + "".join(
        f"  - name: {name}\n    url: {url}\n" for name, url in urls.items()))
    return path


def scheduler_env(database_url: str, smtp_port: int, content_dirs: tuple[Path, Path],
                  **extra: str) -> dict[str, str]:
    """A scheduler's environment: this one's, without any NURTURE_* variable but these."""
    return clean_env({
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NURTURE_SMTP_TIMEOUT_SECONDS": "5",
        "NURTURE_SEQUENCES_DIR": str(content_dirs[0]),
        "NURTURE_TEMPLATES_DIR": str(content_dirs[1]),
        "NURTURE_SENDER": SENDER,
        "NURTURE_TICK_SECONDS": "0.2",
        "NURTURE_BATCH_SIZE": "50",
        "NURTURE_LOG_LEVEL": "INFO",
        **extra,
    })


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Schedulers:
    """`python -m nurture scheduler` processes with their logs in files (a full pipe would block)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.running: list[subprocess.Popen[bytes]] = []
        self.all: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        index = len(self.all)
        with (self.workdir / f"scheduler-{index}.log").open("wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "nurture", "scheduler"],
                                       env=self.env, cwd=self.workdir, stdout=log_file,
                                       stderr=subprocess.STDOUT)
        self.running.append(process)
        self.all.append(process)
        return process

    @staticmethod
    def owner(process: subprocess.Popen[bytes]) -> str:
        return f"{socket.gethostname()}:{process.pid}"

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait(timeout=10)
        self.running.remove(process)

    def stop_all(self, timeout: float = 30) -> list[int]:
        for process in self.running:
            # Before its handler is installed, SIGTERM ends an interpreter still importing.
            self._wait_started(process, timeout)
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=timeout) for process in self.running]
        self.running = []
        return codes

    def _wait_started(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        index = self.all.index(process)
        wait_until(lambda: '"scheduler started"' in self.log_text(index) or process.poll() is not None,
                   timeout, f"scheduler {index} to start")

    def log_text(self, index: int) -> str:
        return (self.workdir / f"scheduler-{index}.log").read_text(errors="replace")

    def sent_by_each(self) -> list[int]:
        totals = []
        for index in range(len(self.all)):
            sent = 0
            for line in self.log_text(index).splitlines():
                if '"dispatch batch"' in line:
                    sent += int(json.loads(line).get("sent", 0))
            totals.append(sent)
        return totals

    def cleanup(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.running = []


@pytest.fixture
def schedulers_for(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Schedulers]]:
    """`schedulers_for(smtp_port, content_dirs, **extra_env)`: a group of schedulers on the test's
    database, none started yet; whatever still runs at the end of the test is killed."""
    made: list[Schedulers] = []

    def make(smtp_port: int, content_dirs: tuple[Path, Path], **extra: str) -> Schedulers:
        made.append(Schedulers(scheduler_env(database_url, smtp_port, content_dirs, **extra),
                               tmp_path))
        return made[-1]

    yield make
    for group in made:
        group.cleanup()
