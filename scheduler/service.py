"""The scheduler service: APScheduler as a clock ticking the dispatcher, reaper and content reload."""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import start_http_server

from nurture.clock import utcnow
from nurture.config import Settings
from nurture.services.metrics import SchedulerMetrics, metered
from nurture.services.runtime import Runtime, runtime_from
from nurture.smtp.factory import transport_from_settings
from nurture.store.accounts import AccountStore
from nurture.store.content_versions import record_content_version
from nurture.store.operations import beat, mark_stopped, purge_departed

log = logging.getLogger(__name__)


@contextmanager
def sqlite_single_process(database_url: str, stop: threading.Event) -> Iterator[bool]:
    """SQLite has no SKIP LOCKED: a second scheduler on the same file waits here instead of racing.

    Yields False when a stop was requested while waiting.
    """
    if not database_url.startswith("sqlite"):
        yield True
        return
    path = Path(database_url.split("///", 1)[-1] + ".scheduler.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another scheduler uses this SQLite database; waiting for it to stop "
                        "(use PostgreSQL to run several schedulers)", extra={"lock": str(path)})
            while not stop.wait(0.5):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    continue
        yield not stop.is_set()
    finally:
        handle.close()


class SchedulerService:
    """Code-defined jobs on an in-memory job store; every piece of state lives in the database."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.metrics = SchedulerMetrics()
        self.dispatcher = runtime.dispatcher(
            transport=metered(transport_from_settings(runtime.settings, separate_process=True),
                              self.metrics))
        self.stopped = threading.Event()
        self.ticks = 0
        self.started_at = utcnow()
        self._scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def tick(self) -> None:
        try:
            report = self.dispatcher.run(utcnow())
            self.ticks += 1
            self.metrics.ticks.inc()
            if report.claimed:
                log.info("tick", extra=report.as_dict())
            beat(self.runtime.engine, self.dispatcher.owner, now=utcnow(), sent=report.sent,
                 content_version=self.runtime.content.current.version, started_at=self.started_at)
        except Exception:
            # A lost database connection or relay must not kill the service: the next tick retries.
            log.exception("dispatch tick failed; retrying on the next tick")

    def housekeeping(self) -> None:
        """Retention: people who left lose their personal data after the configured period."""
        try:
            now = utcnow()
            cutoff = now - timedelta(days=self.runtime.settings.retention_days)
            purged = purge_departed(self.runtime.engine, older_than=cutoff, now=now)
            unconfirmed = AccountStore(self.runtime.engine).purge_unconfirmed(older_than=cutoff)
            if purged or unconfirmed:
                log.info("retention purge", extra={"departed": purged, "unconfirmed": unconfirmed})
        except Exception:
            log.exception("housekeeping failed; it runs again later")

    def reap(self) -> None:
        try:
            returned = self.runtime.store.reap_expired(utcnow())
            if returned:
                self.metrics.lease_expiries.inc(returned)
                log.warning("expired leases returned to the queue", extra={"count": returned})
        except Exception:
            log.exception("reaping expired leases failed")

    def reload_content(self) -> None:
        if self.runtime.content.refresh():
            self.record_content_version()

    def record_content_version(self) -> None:
        content = self.runtime.content.current
        try:
            record_content_version(self.runtime.engine, content.version, content.files, utcnow())
        except Exception:
            # A record for operators: never a reason to stop sending.
            log.exception("could not record the content version")

    def start(self) -> None:
        settings = self.runtime.settings
        add: Any = self._scheduler.add_job
        add(self.tick, "interval", seconds=settings.tick_seconds, id="dispatch",
            next_run_time=utcnow())
        add(self.reap, "interval", seconds=max(settings.lease_seconds / 2, 5), id="reap")
        add(self.reload_content, "interval", seconds=10, id="reload-content")
        add(self.housekeeping, "interval", hours=1, id="housekeeping", next_run_time=utcnow())
        self.record_content_version()
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host,
                              registry=self.metrics.registry)
        self._scheduler.start()
        log.info("scheduler started", extra={"owner": self.dispatcher.owner,
                                             "tick_seconds": settings.tick_seconds,
                                             "content_version": self.runtime.content.current.version})

    def stop(self) -> None:
        """Finish the message in flight, release what this process still holds, stop the clock."""
        self.dispatcher.request_stop()
        self._scheduler.shutdown(wait=True)
        released = self.runtime.store.release_all(self.dispatcher.owner)
        self.dispatcher.transport.close()
        try:
            mark_stopped(self.runtime.engine, self.dispatcher.owner, utcnow())
        except Exception:
            log.exception("could not record the stop")
        log.info("scheduler stopped", extra={"released": released})
        self.stopped.set()


def run_scheduler(settings: Settings) -> int:
    # Live edits are checked against every content rule before they may send.
    runtime = runtime_from(settings, content_rules=True)
    stop_requested = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    with sqlite_single_process(settings.database_url, stop_requested) as may_run:
        if not may_run:
            return 0
        service = SchedulerService(runtime)
        signal.signal(signal.SIGHUP, lambda signum, frame: service.reload_content())
        service.start()
        stop_requested.wait()
        service.stop()
    return 0
