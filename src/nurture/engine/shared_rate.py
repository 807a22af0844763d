"""Sending limits that hold for the whole deployment, however many scheduler processes share them:
token buckets kept in the database (per second, per minute), from which each process takes a few
tokens at a time in one short transaction."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from nurture.engine.throttle import MAX_NAP_SECONDS, Clock, ShouldStop, Sleep

LOCAL_TOKENS_LIVE = 0.1
"""Seconds a process may keep tokens it took and did not use: older ones are dropped, so tokens
taken before a pause cannot be spent on top of the bucket's own after it."""


@dataclass(frozen=True)
class Bucket:
    """`rate` tokens a second, at most `capacity` saved up: in any `seconds`-long stretch at most
    rate × seconds + capacity sends, whoever sends them."""

    name: str
    rate: float
    capacity: float

    @classmethod
    def for_limit(cls, name: str, total: float, seconds: float) -> Bucket:
        """`total` sends per `seconds`, with a capacity of a twenty-fifth of it (at least one):
        50 a second can reach 52 in a second, never 100."""
        return cls(name, total / seconds, max(1.0, math.ceil(total / 25)))


@dataclass(frozen=True)
class DayCap:
    """At most `limit` sends on the day numbered `day` (a date's ordinal); the count starts
    again on another day."""

    name: str
    day: int
    limit: int


class Grant(NamedTuple):
    granted: int
    wait: float
    """When none was granted: seconds until a bucket would have one more (0 when a day cap
    stands in the way: that wait is the caller's to reckon)."""
    left_today: int | None = None
    """What the day caps leave after this take (the lowest); None without a cap."""


class TokenStore(Protocol):
    def take(self, buckets: Seq[Bucket], wanted: int, now: float, *,
             caps: Seq[DayCap] = ()) -> Grant:
        """Atomically take up to `wanted` tokens from every bucket and cap alike, the buckets
        refilled up to `now` (seconds of the wall clock)."""
        ...


class SharedRateLimiter:
    """The dispatcher's limiter (as `throttle.RateLimiter`), with the budget in the database."""

    def __init__(self, buckets: Seq[Bucket], store: TokenStore, *, clock: Clock = time.time,
                 sleep: Sleep = time.sleep) -> None:
        if not buckets:
            raise ValueError("a shared rate limiter needs at least one bucket")
        self.buckets = tuple(buckets)
        self._store = store
        self._clock = clock
        self._sleep = sleep
        # Tokens a transaction: a hundredth of the smallest bucket's second, and at least one.
        # Tokens taken together are spent together: more would bunch the sends up.
        self._block = max(1, math.floor(min(bucket.rate for bucket in self.buckets) / 100))
        self._local = 0
        self._taken_at = 0.0

    def acquire(self, should_stop: ShouldStop = lambda: False) -> bool:
        """Take one send's tokens, waiting for them; False when `should_stop` turns true."""
        while True:
            now = self._clock()
            if self._local > 0 and now - self._taken_at <= LOCAL_TOKENS_LIVE:
                self._local -= 1
                return True
            grant = self._store.take(self.buckets, self._block, now)
            if grant.granted > 0:
                self._local, self._taken_at = grant.granted - 1, now
                return True
            if should_stop():
                return False
            self._sleep(min(max(grant.wait, 0.001), MAX_NAP_SECONDS))

    def sends_within(self, seconds: float) -> int:
        """How many sends the deployment's limits allow in `seconds` (at least 1)."""
        return max(1, min(math.floor(bucket.rate * seconds + bucket.capacity)
                          for bucket in self.buckets))
