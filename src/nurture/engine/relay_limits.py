"""One relay's sending limits (per second, minute, hour and day, and a warm-up schedule) and the
budget that keeps to them for the whole deployment through the shared token store.

The rates are token buckets on the wall clock, as the deployment's own limits are; the daily cap
counts the sends of a UTC day, the day of the run that sends (so `dispatch --at` and tests move it)."""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from nurture.engine.shared_rate import LOCAL_TOKENS_LIVE, Bucket, DayCap, TokenStore
from nurture.engine.throttle import Clock
from nurture.setting_values import RelayLimits

HELD_BY_RELAYS = "held until "
"""How the error of a delivery begins when no relay's limits let it through."""
SHORT_WAIT = 2.0
"""Seconds a relay's rate limit may keep a message waiting for it; a longer wait (an hour's or a
day's budget spent) passes the message to the next relay, or holds it."""


def buckets_of(limits: RelayLimits, key: str) -> tuple[Bucket, ...]:
    """The token buckets of the limits' rates, named after `key` ("relay:ses")."""
    return tuple(Bucket.for_limit(f"{key}:{unit}", total, seconds)
                 for unit, total, seconds in (("second", limits.per_second, 1.0),
                                              ("minute", limits.per_minute, 60.0),
                                              ("hour", limits.per_hour, 3600.0))
                 if total is not None)


def relay_key(relay: str) -> str:
    """The prefix of a relay's names in the token store."""
    return f"relay:{relay}"


def day_counter(key: str) -> str:
    """The token store's name for the sends of the day of `key`."""
    return f"{key}:day"


class Availability(NamedTuple):
    """Whether a relay may take a message now: `wait` 0 means a token was taken for it."""

    wait: float
    """Seconds until it may (0: now)."""
    why: str = ""
    """What holds it, for the operator: "the daily cap of 1000"."""


NOW = Availability(0.0)


def next_day(at: datetime) -> datetime:
    """The UTC midnight after `at`, when a daily cap starts again."""
    day = at.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Budget:
    """Takes the tokens of one relay (or destination) from the shared store, a few at a time as
    `SharedRateLimiter` does; never waits itself: the caller decides whether to wait, to send
    elsewhere, or to hold the message. `key` names its rows ("relay:ses")."""

    def __init__(self, key: str, limits: RelayLimits, store: TokenStore, *,
                 clock: Clock = time.time) -> None:
        self.key = key
        self.limits = limits
        self._buckets = buckets_of(limits, key)
        self._store = store
        self._clock = clock
        # A block of tokens a transaction: a hundredth of the smallest rate's second; one when
        # a daily cap is set, so that tokens taken and not used never eat into it.
        rates = [bucket.rate for bucket in self._buckets]
        self._block = 1 if limits.capped or not rates else max(1, math.floor(min(rates) / 100))
        self._local = 0
        self._taken_at = 0.0
        self._capped_day: date | None = None
        self.left_today: int | None = None
        """What the daily cap leaves for today, as of the last take (None: no cap)."""

    def take(self, at: datetime) -> Availability:
        """One message's tokens for a send at `at` (the run's time), or how long until there are."""
        now = self._clock()
        if self._local > 0 and now - self._taken_at <= LOCAL_TOKENS_LIVE:
            self._local -= 1
            return NOW
        day = at.astimezone(UTC).date()
        cap = self.limits.day_cap(day)
        if cap is not None and self._capped_day == day:
            return self._capped(at, cap)
        caps = (DayCap(day_counter(self.key), day.toordinal(), cap),) if cap is not None else ()
        grant = self._store.take(self._buckets, self._block, now, caps=caps)
        self.left_today = grant.left_today
        if grant.granted > 0:
            self._local, self._taken_at = grant.granted - 1, now
            return NOW
        if cap is not None and grant.left_today is not None and grant.left_today <= 0:
            self._capped_day = day  # spent for the day: no transaction again until tomorrow
            return self._capped(at, cap)
        return Availability(grant.wait, "its rate limit")

    def _capped(self, at: datetime, cap: int) -> Availability:
        self.left_today = 0
        return Availability((next_day(at) - at).total_seconds(), f"its daily cap of {cap}")

