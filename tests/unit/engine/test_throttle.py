"""The relay guards with a fake clock: sliding-window rate limits, per-process shares, the breaker."""

from __future__ import annotations

import logging

import pytest

from nurture.engine.throttle import (
    MAX_NAP_SECONDS,
    BreakerState,
    CircuitBreaker,
    RateLimiter,
    ThrottleSettings,
    Window,
)


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.naps.append(seconds)
        self.now += seconds


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of `times` inside any half-open stretch [t, t + seconds)."""
    return max(sum(1 for other in times if start <= other < start + seconds) for start in times)


def send_times(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        assert limiter.acquire()
        times.append(clock.now)
    return times


def test_per_second_limit_holds_in_every_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Window(5, 1.0)], clock=clock, sleep=clock.sleep)

    times = send_times(limiter, clock, 23)

    assert times[:5] == [1000.0] * 5, "a fresh limiter lets a full window through at once"
    assert most_in_any_window(times, 1.0) == 5
    assert times[-1] - times[0] == pytest.approx(4.0)
    assert all(nap <= MAX_NAP_SECONDS for nap in clock.naps)


def test_second_and_minute_limits_together() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Window(10, 1.0), Window(30, 60.0)], clock=clock, sleep=clock.sleep)

    times = send_times(limiter, clock, 65)

    assert most_in_any_window(times, 1.0) == 10
    assert most_in_any_window(times, 60.0) == 30
    # 30 go in the first 3 seconds, the next 30 a minute later, 5 more a minute after that.
    assert times[30] - times[0] == pytest.approx(60.0)
    assert times[64] - times[0] == pytest.approx(120.0)


def test_a_stop_during_the_wait_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Window(1, 60.0)], clock=clock, sleep=clock.sleep)
    assert limiter.acquire()
    stop_after = 3
    naps: list[float] = []

    def should_stop() -> bool:
        naps.append(clock.now)
        return len(naps) > stop_after

    assert not limiter.acquire(should_stop)
    assert clock.now - 1000.0 == pytest.approx(stop_after * MAX_NAP_SECONDS)
    assert limiter.wait_time() == pytest.approx(60.0 - stop_after * MAX_NAP_SECONDS)


@pytest.mark.parametrize(
    ("total", "seconds", "expected"),
    [
        (10, 1.0, Window(10, 1.0)),
        (10.7, 1.0, Window(10, 1.0)),  # rounded down: never more than the limit
        (0.5, 1.0, Window(1, 2.0)),  # less than one: one per longer window
    ],
)
def test_a_limit_as_a_window(total: float, seconds: float, expected: Window) -> None:
    assert Window.of(total, seconds) == expected


def test_limiter_from_settings_keeps_the_totals() -> None:
    settings = ThrottleSettings(rate_per_second=20, rate_per_minute=900)
    limiter = RateLimiter.from_settings(settings)
    assert limiter is not None
    assert limiter.windows == (Window(20, 1.0), Window(900, 60.0))
    assert RateLimiter.from_settings(ThrottleSettings()) is None


def test_sends_within_caps_a_claim_to_what_half_a_lease_can_send() -> None:
    limiter = RateLimiter([Window(6, 1.0), Window(300, 60.0)])
    assert limiter.sends_within(150.0) == 750  # per minute: 300 * 150 / 60
    assert limiter.sends_within(5.0) == 25
    assert RateLimiter([Window(1, 90.0)]).sends_within(5.0) == 1


def test_breaker_opens_after_consecutive_failures_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown=30, max_cooldown=100, clock=clock)
    with caplog.at_level(logging.INFO, logger="nurture.engine.throttle"):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()  # a success in between: the count starts again
        for _ in range(3):
            assert breaker.allow()
            breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        for _ in range(10):  # while open nothing is let through, and nothing more is logged
            assert not breaker.ready()
            assert not breaker.allow()
        clock.now += 29.9
        assert not breaker.allow()
    opened = [r for r in caplog.records if "opened" in r.getMessage()]
    assert len(opened) == 1
    assert breaker.openings == 1


def test_breaker_half_open_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=30, max_cooldown=100, clock=clock)
    breaker.record_failure()
    clock.now += 30
    assert breaker.ready()
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.ready() and not breaker.allow(), "only one trial at a time"

    breaker.record_failure()  # the trial failed: open again, twice as long
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(60)
    clock.now += 60
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_in() == pytest.approx(100), "capped at max_cooldown"
    clock.now += 100
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.openings == 3

    breaker.record_failure()  # closed again with the base cooldown
    assert breaker.retry_in() == pytest.approx(30)
