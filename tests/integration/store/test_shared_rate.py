"""The deployment's sending limit kept in the database: three processes taking tokens from one
bucket of 50 a second never get more than 52 in any second between them, and get at least 45 a
second on average, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import time

from nurture.engine.shared_rate import Bucket, SharedRateLimiter
from nurture.store.database import make_engine
from nurture.store.sql.tokens import SqlTokenStore
from tests.integration.scheduler.test_relays import busiest_second

SECONDS = 10.0


def _take_for_a_while(url: str, start: float) -> list[float]:
    """One process: take a token at a time until SECONDS after `start` (wall clock)."""
    engine = make_engine(url)
    limiter = SharedRateLimiter([Bucket.for_limit("per-second", 50, 1.0)], SqlTokenStore(engine))
    while time.time() < start:
        time.sleep(0.01)
    granted: list[float] = []
    while time.time() < start + SECONDS:
        if limiter.acquire(lambda: time.time() >= start + SECONDS):
            granted.append(time.time())
    engine.dispose()
    return granted


def test_three_processes_share_one_bucket(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = time.time() + 3.0  # every process ready before the race begins
    with context.Pool(3) as pool:
        per_process = pool.starmap(_take_for_a_while, [(database_url, start)] * 3)
    grants = sorted(moment for taken in per_process for moment in taken)
    middle = [moment for moment in grants if start + 1 <= moment < start + SECONDS - 1]
    average = len(middle) / (SECONDS - 2)
    print(f"\n[limits] three processes, 50/s: busiest second {busiest_second(grants)}, "
          f"average {average:.1f}/s, per process {[len(taken) for taken in per_process]}")
    assert busiest_second(grants) <= 52
    assert average >= 45
    assert all(len(taken) > 0 for taken in per_process)
