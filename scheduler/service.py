"""The scheduler service: APScheduler as a clock ticking the dispatch, lease, content and
housekeeping jobs, and the signals that reload content (SIGHUP) and stop it (SIGTERM, SIGINT)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import start_http_server

from nurture.clock import utcnow
from nurture.config import Settings
from nurture.scheduler.dispatch import DispatchJob
from nurture.scheduler.housekeeping import Housekeeping
from nurture.scheduler.judge_experiments import JudgeExperiments
from nurture.scheduler.reap_leases import ReapLeases
from nurture.scheduler.reload_content import ReloadContent
from nurture.scheduler.sqlite_lock import sqlite_single_process
from nurture.services.experiments import judge_experiments
from nurture.services.metrics import SchedulerMetrics, metered
from nurture.services.retention import purge_expired
from nurture.services.runtime import Runtime, runtime_from
from nurture.services.sending_state import sending_state
from nurture.smtp.failover import FailoverTransport
from nurture.store.content_versions import record_content_version
from nurture.store.operations import beat, mark_stopped

log = logging.getLogger(__name__)

CONTENT_RELOAD_SECONDS = 10
HOUSEKEEPING_HOURS = 1
JUDGE_HOURS = 24
"""One look a day: the stopping rule's error rates were simulated for daily looks, and more
looks would declare more false winners."""
JUDGE_FIRST_MINUTES = 5
SIGNAL_CHECK_SECONDS = 0.5


class SchedulerService:
    """Code-defined jobs on an in-memory job store; every piece of state lives in the database.

    `clock` (aware UTC) is the only time the jobs see; APScheduler only decides when they run."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock
        self.metrics = SchedulerMetrics()
        transport = runtime.transport(separate_process=True)
        if isinstance(transport, FailoverTransport):
            self.metrics.watch_relays(transport)
        self.dispatcher = runtime.dispatcher(transport=metered(transport, self.metrics))
        self.metrics.watch_destinations(self.dispatcher.pacer)
        self.stopped = threading.Event()
        engine, content = runtime.engine, runtime.content
        self.dispatch = DispatchJob(
            self.dispatcher, beat=partial(beat, engine),
            content_version=lambda: content.current.version, clock=clock, metrics=self.metrics,
            sending_state=partial(sending_state, transport, self.dispatcher.pacer))
        self.reap = ReapLeases(runtime.store, clock=clock, metrics=self.metrics)
        self.reload_content = ReloadContent(
            content, record=partial(record_content_version, engine), clock=clock)
        self.housekeeping = Housekeeping(
            purge=partial(purge_expired, engine,
                          retention=timedelta(days=runtime.settings.retention_days)),
            clock=clock)
        self.judge_experiments = JudgeExperiments(
            judge=partial(judge_experiments, engine), content=content, clock=clock)
        self._scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        settings = self.runtime.settings
        add: Any = self._scheduler.add_job
        add(self.dispatch.run, "interval", seconds=settings.tick_seconds, id="dispatch",
            next_run_time=self.clock())
        add(self.reap.run, "interval", seconds=max(settings.lease_seconds / 2, 5), id="reap")
        add(self.reload_content.run, "interval", seconds=CONTENT_RELOAD_SECONDS,
            id="reload-content")
        add(self.housekeeping.run, "interval", hours=HOUSEKEEPING_HOURS, id="housekeeping",
            next_run_time=self.clock())
        # The first look comes a few minutes after the start, not at it: a restart is no
        # reason for an extra look, and a quick start and stop has nothing to wait for.
        add(self.judge_experiments.run, "interval", hours=JUDGE_HOURS, id="judge-experiments",
            next_run_time=self.clock() + timedelta(minutes=JUDGE_FIRST_MINUTES))
        self.reload_content.record_version()
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
        if self._scheduler.running:  # a service whose jobs were run by hand has no clock to stop
            self._scheduler.shutdown(wait=True)
        released = self.runtime.store.release_all(self.dispatcher.owner)
        self.dispatcher.transport.close()
        try:
            mark_stopped(self.runtime.engine, self.dispatcher.owner, self.clock())
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
        signal.signal(signal.SIGHUP, lambda signum, frame: service.reload_content.run())
        service.start()
        # A timed wait, not a bare one: Python runs a signal's handler only when the main thread
        # runs, and a signal taken by another thread (a library's worker) would leave a bare
        # wait asleep for ever.
        while not stop_requested.wait(SIGNAL_CHECK_SECONDS):
            pass
        service.stop()
    return 0
