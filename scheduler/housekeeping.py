"""Retention: people who left, and signups never confirmed, lose their personal data once the
retention period has passed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)


class PurgeDeparted(Protocol):
    def __call__(self, *, older_than: datetime, now: datetime) -> int: ...


class PurgeUnconfirmed(Protocol):
    def __call__(self, *, older_than: datetime) -> int: ...


class Housekeeping:
    """Purges with the cutoff `retention` before the clock's `now`; a failure is logged and the
    job runs again later."""

    def __init__(self, *, purge_departed: PurgeDeparted, purge_unconfirmed: PurgeUnconfirmed,
                 retention: timedelta, clock: Callable[[], datetime]) -> None:
        self.purge_departed = purge_departed
        self.purge_unconfirmed = purge_unconfirmed
        self.retention = retention
        self.clock = clock

    def run(self) -> None:
        try:
            now = self.clock()
            cutoff = now - self.retention
            purged = self.purge_departed(older_than=cutoff, now=now)
            unconfirmed = self.purge_unconfirmed(older_than=cutoff)
            if purged or unconfirmed:
                log.info("retention purge", extra={"departed": purged, "unconfirmed": unconfirmed})
        except Exception:
            log.exception("housekeeping failed; it runs again later")
