"""The lease reaper: deliveries whose lease ran out (their process died mid-batch) go back to the
queue, so that another scheduler sends them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nurture.services.metrics import SchedulerMetrics

log = logging.getLogger(__name__)


class ExpiredLeases(Protocol):
    def reap_expired(self, now: datetime) -> int: ...


class ReapLeases:
    """Returns the expired leases at the clock's `now`, counted in the metrics and logged."""

    def __init__(self, store: ExpiredLeases, *, clock: Callable[[], datetime],
                 metrics: SchedulerMetrics) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics

    def run(self) -> int:
        """How many rows went back to the queue (0 after a failure, which is logged)."""
        try:
            returned = self.store.reap_expired(self.clock())
        except Exception:
            log.exception("reaping expired leases failed")
            return 0
        if returned:
            self.metrics.lease_expiries.inc(returned)
            log.warning("expired leases returned to the queue", extra={"count": returned})
        return returned
