"""The deployment's sending limit kept in the database, on SQLite and PostgreSQL: processes taking
tokens from one bucket of 50 a second get no more than 52 in any second between them (checked on
a stepped clock), never more than the bucket allows over a whole run (checked on the wall clock
with three processes), and keep taking near the rate."""

from __future__ import annotations

import multiprocessing
import time

from nurture.engine.shared_rate import Bucket, SharedRateLimiter
from nurture.store.database import make_engine
from nurture.store.sql.tokens import SqlTokenStore
from tests.integration.scheduler.test_relays import busiest_second

SECONDS = 10.0
RATE, CAPACITY = 50, 2


class SteppingClock:
    """The wall clock of two limiters taking turns: each reading moves it on by a millisecond,
    each sleep by what was asked."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_two_limiters_on_one_bucket_never_pass_52_in_a_second(database_url: str) -> None:
    engine, clock = make_engine(database_url), SteppingClock()
    store = SqlTokenStore(engine)
    limiters = [SharedRateLimiter([Bucket.for_limit("per-second", RATE, 1.0)], store,
                                  clock=clock, sleep=clock.sleep) for _ in range(2)]
    grants: list[float] = []
    end = clock.now + 5
    while clock.now < end:
        for limiter in limiters:
            assert limiter.acquire()
            grants.append(clock.now)
    engine.dispose()
    # At most the full bucket's two on top of the second's fifty, and then the rate alone.
    assert RATE <= busiest_second(grants) <= RATE + CAPACITY
    assert busiest_second([moment for moment in grants if moment >= grants[0] + 1]) <= RATE + 1
    assert len(grants) <= CAPACITY + RATE * (grants[-1] - grants[0]) + 1


def _take_for_a_while(url: str, start: float) -> tuple[list[float], list[float]]:
    """One process: take a token at a time until SECONDS after `start`. Returns the clock's
    readings the limiter asked for, and the reading each grant was made at."""
    engine = make_engine(url)
    readings: list[float] = []

    def clock() -> float:
        readings.append(time.time())
        return readings[-1]

    limiter = SharedRateLimiter([Bucket.for_limit("per-second", RATE, 1.0)],
                                SqlTokenStore(engine), clock=clock)
    while time.time() < start:
        time.sleep(0.01)
    granted: list[float] = []
    while time.time() < start + SECONDS:
        if limiter.acquire(lambda: time.time() >= start + SECONDS):
            granted.append(readings[-1])
    engine.dispose()
    return readings, granted


def test_three_processes_share_one_bucket(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = time.time() + 3.0  # every process ready before the race begins
    with context.Pool(3) as pool:
        results = pool.starmap(_take_for_a_while, [(database_url, start)] * 3)
    readings = [moment for taken, _ in results for moment in taken]
    grants = sorted(moment for _, granted in results for moment in granted)
    middle = [moment for moment in grants if start + 1 <= moment < start + SECONDS - 1]
    average = len(middle) / (SECONDS - 2)
    print(f"\n[limits] three processes, 50/s: {len(grants)} grants in {SECONDS:.0f} s, busiest "
          f"second {busiest_second(grants)}, average {average:.1f}/s, per process "
          f"{[len(granted) for _, granted in results]}")
    # Exact whatever the machine's load: the bucket is refilled by the clock readings the takes
    # bring, so the whole run can never hold more than its capacity and the rate over the span
    # of those readings. Tokens lost to a race between processes would break it.
    assert len(grants) <= CAPACITY + RATE * (max(readings) - min(readings))
    # A second's count is printed, not held to 52: a process that read the clock and then waited
    # for the row's lock is granted at the other's later reading, so readings shift by what the
    # machine delays. The deterministic test above holds the second-long figure exactly.
    # Kept well below 50: a loaded machine slows the takers themselves (33 a second was seen
    # with a package install beside the run). A wrong wait or a stalled lock gives a few a second.
    assert average >= 30
    assert all(granted for _, granted in results)
