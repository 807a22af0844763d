"""Guards in front of the relay: a circuit breaker that stops hammering a relay that keeps failing, and
a rate limiter that keeps to the relay's sending limits (in this process; `shared_rate` keeps them
for the whole deployment through the database)."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from nurture.engine.ports import SendErrorKind, SendResult
from nurture.engine.replies import destination_deferral

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
ShouldStop = Callable[[], bool]

# A limiter wait is cut into naps of at most this long, so a stop request (SIGTERM) is noticed
# promptly even when the per-minute budget is spent and the next slot is a minute away.
MAX_NAP_SECONDS = 0.25


def _never() -> bool:
    return False


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottleSettings:
    """The relay limits and breaker tuning (checked where the settings are read, in config).

    The rates are totals for the whole installation; 0 means no limit.
    """

    rate_per_second: float = 0.0
    rate_per_minute: float = 0.0
    breaker_failures: int = 5
    """Consecutive failed sends that open the breaker; 0 turns the breaker off."""
    breaker_cooldown_seconds: float = 30.0
    breaker_max_cooldown_seconds: float = 600.0


# -- rate limiter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """At most `count` sends in any `seconds`-long stretch of time."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0:
            raise ValueError(f"a rate window needs count >= 1 and seconds > 0, got {self}")

    @classmethod
    def of(cls, total: float, seconds: float) -> Window:
        """`total` sends per `seconds`, rounded down; below one, one per proportionally longer
        window (the limit then holds on average rather than in every window)."""
        if total >= 1:
            return cls(math.floor(total), seconds)
        return cls(1, seconds / total)


class RateLimiter:
    """Sliding-window limits (e.g. per second and per minute): a send waits until every window has
    room. The clock and sleep are injected so tests advance time instead of sleeping."""

    def __init__(
        self,
        windows: Seq[Window],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not windows:
            raise ValueError("a rate limiter needs at least one window")
        self._windows = tuple(windows)
        # One log of send times per window: exact "at most N in any W seconds", which a token
        # bucket (bursting to its capacity on top of the refill) does not guarantee.
        self._sent: tuple[deque[float], ...] = tuple(deque() for _ in self._windows)
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls, settings: ThrottleSettings, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> RateLimiter | None:
        """The configured limits, kept in this process alone; None when no limit is set."""
        windows = [
            Window.of(total, seconds)
            for total, seconds in (
                (settings.rate_per_second, 1.0),
                (settings.rate_per_minute, 60.0),
            )
            if total > 0
        ]
        return cls(windows, clock=clock, sleep=sleep) if windows else None

    @property
    def windows(self) -> tuple[Window, ...]:
        return self._windows

    def wait_time(self) -> float:
        """Seconds until a send would be allowed; 0 when it is allowed now."""
        now = self._clock()
        wait = 0.0
        for window, sent in zip(self._windows, self._sent, strict=True):
            while sent and sent[0] <= now - window.seconds:
                sent.popleft()
            if len(sent) >= window.count:
                wait = max(wait, sent[0] + window.seconds - now)
        return wait

    def acquire(self, should_stop: ShouldStop = _never) -> bool:
        """Wait for room in every window and take it; False (nothing taken) when `should_stop`
        turns true while waiting."""
        while True:
            wait = self.wait_time()
            if wait <= 0:
                now = self._clock()
                for sent in self._sent:
                    sent.append(now)
                return True
            if should_stop():
                return False
            self._sleep(min(wait, MAX_NAP_SECONDS))

    def sends_within(self, seconds: float) -> int:
        """How many sends the limits allow on average in `seconds` (at least 1): a claim bigger
        than this could not be sent before its lease runs out."""
        return max(1, min(math.floor(w.count * seconds / w.seconds) for w in self._windows))


# -- circuit breaker -------------------------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after `failures` consecutive failed sends; while open nothing is sent. After the
    cooldown one trial send is let through (half-open): success closes the breaker, failure opens
    it again with the cooldown doubled up to `max_cooldown`. Each opening is logged once."""

    def __init__(
        self,
        *,
        failures: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 600.0,
        clock: Clock = time.monotonic,
        name: str = "smtp relay",
    ) -> None:
        if failures < 1 or cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("a breaker needs failures >= 1 and 0 < cooldown <= max_cooldown")
        self._threshold = failures
        self._base_cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._clock = clock
        self.name = name
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown = cooldown
        self._opened_at = 0.0
        self._trial_running = False
        self.openings = 0

    @classmethod
    def from_settings(
        cls, settings: ThrottleSettings, *, clock: Clock = time.monotonic
    ) -> CircuitBreaker | None:
        if settings.breaker_failures == 0:
            return None
        return cls(
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
            max_cooldown=settings.breaker_max_cooldown_seconds,
            clock=clock,
        )

    @property
    def state(self) -> BreakerState:
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through; 0 otherwise."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def ready(self) -> bool:
        """Whether a send could be let through now; changes nothing (checked before claiming)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN:
            return not self._trial_running
        return self.retry_in() <= 0

    def allow(self) -> bool:
        """Whether to send now; after the cooldown this lets exactly one trial through."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self.retry_in() > 0:
                return False
            self._state = BreakerState.HALF_OPEN
            self._trial_running = False
        if self._trial_running:
            return False
        self._trial_running = True
        return True

    def record_success(self) -> None:
        if self._state is not BreakerState.CLOSED:
            log.info("relay circuit closed: sending resumes", extra={"relay": self.name})
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown = self._base_cooldown
        self._trial_running = False

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
            self._open()
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self._threshold:
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_running = False
        self.openings += 1
        # Once per opening: while open nothing is tried, so nothing else is logged either.
        log.warning(
            "relay circuit opened: sends paused",
            extra={
                "relay": self.name,
                "consecutive_failures": self._failures,
                "retry_in_seconds": round(self._cooldown, 1),
            },
        )


# -- both, as the dispatcher uses them -------------------------------------------------------------


class Limiter(Protocol):
    """A sending rate: this process's own (`RateLimiter`) or the deployment's (`SharedRateLimiter`)."""

    def acquire(self, should_stop: ShouldStop = _never) -> bool: ...

    def sends_within(self, seconds: float) -> int: ...


@dataclass
class Throttle:
    """What stands between the dispatcher and its transport; either part may be absent."""

    breaker: CircuitBreaker | None = None
    limiter: Limiter | None = None

    @classmethod
    def from_settings(
        cls, settings: ThrottleSettings, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> Throttle:
        return cls(
            breaker=CircuitBreaker.from_settings(settings, clock=clock),
            limiter=RateLimiter.from_settings(settings, clock=clock, sleep=sleep),
        )

    def ready(self) -> bool:
        """The relay may be tried: there is no breaker, or it is not open."""
        return self.breaker is None or self.breaker.ready()

    def gate(self, should_stop: ShouldStop = _never) -> bool:
        """Wait for the rate limit and ask the breaker; False means "do not send now"."""
        breaker, limiter = self.breaker, self.limiter
        if breaker is not None and not breaker.ready():
            return False
        if limiter is not None and not limiter.acquire(should_stop):
            return False
        # After the wait: ask last, since in half-open state this takes the single trial.
        return breaker is None or breaker.allow()

    def observe(self, result: SendResult) -> None:
        """Tell the breaker how a send went."""
        if self.breaker is None:
            return
        # A permanent refusal is an answer about the recipient from a relay that works, and so
        # is a destination's request to slow down (4.7.x): the pacing of that destination
        # answers it. A message no relay's limits let through was not tried.
        if result.error_kind is SendErrorKind.LIMITED:
            return
        if (result.ok or result.error_kind is SendErrorKind.PERMANENT
                or destination_deferral(result)):
            self.breaker.record_success()
        else:
            self.breaker.record_failure()
