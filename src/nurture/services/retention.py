"""The retention purge, one function for the scheduler's housekeeping and `nurture db purge`:
people who left, and signups never confirmed, lose their personal data once the retention period
has passed; click counts (NURTURE_CLICK_COUNTING) last clicked before it are deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from nurture.engine.ports import Progress
from nurture.store.accounts.store import AccountStore
from nurture.store.clicks import purge_clicks
from nurture.store.operations import purge_departed


@dataclass(frozen=True)
class Purged:
    departed: int
    """People who unsubscribed, bounced or complained: only a hash of the address is kept."""
    unconfirmed: int
    """Signups never confirmed: deleted."""
    cutoff: datetime
    """Untouched since before this instant: old enough to purge."""
    clicks: int = 0
    """Deliveries whose click count was deleted."""

    def as_dict(self) -> dict[str, int | str]:
        return {"departed": self.departed, "unconfirmed": self.unconfirmed,
                "clicks": self.clicks, "cutoff": self.cutoff.isoformat()}


def purge_expired(engine: Engine, *, now: datetime, retention: timedelta,
                  departed_progress: Progress | None = None,
                  unconfirmed_progress: Progress | None = None) -> Purged:
    """Purge everyone whose data the retention period no longer allows, as of `now`."""
    cutoff = now - retention
    departed = purge_departed(engine, older_than=cutoff, now=now, progress=departed_progress)
    unconfirmed = AccountStore(engine).purge_unconfirmed(older_than=cutoff,
                                                         progress=unconfirmed_progress)
    clicks = purge_clicks(engine, older_than=cutoff)
    return Purged(departed=departed, unconfirmed=unconfirmed, cutoff=cutoff, clicks=clicks)
