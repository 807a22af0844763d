"""The dispatch job: on each tick, send what is due at the clock's `now`, then beat the heartbeat
that `nurture status` shows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nurture.engine.dispatch_run import DispatchReport
from nurture.services.metrics import SchedulerMetrics

log = logging.getLogger(__name__)


class Dispatches(Protocol):
    owner: str

    def run(self, now: datetime) -> DispatchReport: ...


class Heartbeat(Protocol):
    def __call__(self, owner: str, *, now: datetime, sent: int, content_version: str,
                 started_at: datetime, sending_state: str | None = None) -> None: ...


class DispatchJob:
    """One dispatch run per tick. A failure (a lost database connection or relay) is logged and
    the next tick tries again: it never ends the service."""

    def __init__(self, dispatcher: Dispatches, *, beat: Heartbeat,
                 content_version: Callable[[], str], clock: Callable[[], datetime],
                 metrics: SchedulerMetrics,
                 sending_state: Callable[[], str | None] = lambda: None) -> None:
        self.dispatcher = dispatcher
        self.beat = beat
        self.content_version = content_version
        self.clock = clock
        self.metrics = metrics
        self.sending_state = sending_state
        self.started_at = clock()
        self.ticks = 0

    def run(self) -> None:
        try:
            report = self.dispatcher.run(self.clock())
            self.ticks += 1
            self.metrics.ticks.inc()
            if report.claimed:
                log.info("tick", extra=report.as_dict())
            self.beat(self.dispatcher.owner, now=self.clock(), sent=report.sent,
                      content_version=self.content_version(), started_at=self.started_at,
                      sending_state=self.sending_state())
        except Exception:
            log.exception("dispatch tick failed; retrying on the next tick")
