"""Retention: people who left, and signups never confirmed, lose their personal data once the
retention period has passed. The purge itself is `nurture.services.retention.purge_expired`, which
`nurture db purge` runs by hand."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nurture.services.retention import Purged

log = logging.getLogger(__name__)


class Purge(Protocol):
    def __call__(self, *, now: datetime) -> Purged: ...


class Housekeeping:
    """Runs the purge at the clock's `now`; a failure is logged and the job runs again later."""

    def __init__(self, *, purge: Purge, clock: Callable[[], datetime]) -> None:
        self.purge = purge
        self.clock = clock

    def run(self) -> None:
        try:
            purged = self.purge(now=self.clock())
            if purged.departed or purged.unconfirmed:
                log.info("retention purge", extra={"departed": purged.departed,
                                                   "unconfirmed": purged.unconfirmed})
        except Exception:
            log.exception("housekeeping failed; it runs again later")
