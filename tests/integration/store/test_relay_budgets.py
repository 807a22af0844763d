"""A relay's budget in the deployment's token store, on SQLite and PostgreSQL: its daily cap
counts the sends of the run's UTC day across processes and starts again the next day; a warm-up
schedule caps each day from its start; a rate asks a short wait, not a day's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from nurture.engine.relay_limits import NOW, Budget
from nurture.setting_values import RelayLimits, Warmup
from nurture.store.database import make_engine
from nurture.store.sql.tokens import SqlTokenStore

D = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _budget(engine: Engine, limits: RelayLimits, clock: FakeClock) -> Budget:
    return Budget("relay:a", limits, SqlTokenStore(engine), clock=clock)


def _granted(budget: Budget, at: datetime, tries: int) -> int:
    return sum(budget.take(at) == NOW for _ in range(tries))


def test_a_daily_cap_holds_across_processes_until_the_next_utc_day(database_url: str) -> None:
    engine, clock = make_engine(database_url), FakeClock()
    first, second = (_budget(engine, RelayLimits(per_day=5), clock) for _ in range(2))
    assert _granted(first, D, 3) == 3 and first.left_today == 2
    assert _granted(second, D, 10) == 2, "the other process gets what the day has left"
    refused = first.take(D)
    assert refused.why == "its daily cap of 5" and first.left_today == 0
    assert refused.wait == (datetime(2026, 12, 3, tzinfo=UTC) - D).total_seconds()
    # The next day counts again from none, whatever hour it is.
    tomorrow = D + timedelta(hours=10)
    assert _granted(second, tomorrow, 10) == 5 and _granted(first, tomorrow, 1) == 0
    engine.dispose()


def test_a_warm_up_caps_each_day_from_its_start(database_url: str) -> None:
    engine, clock = make_engine(database_url), FakeClock()
    limits = RelayLimits(per_day=7, warmup=Warmup(date(2026, 12, 2), (2, 4)))
    budget = _budget(engine, limits, clock)
    granted = [_granted(budget, D + timedelta(days=day), 10) for day in range(-1, 3)]
    # The day before its start holds to the first day's cap; after the list, the daily limit.
    assert granted == [2, 2, 4, 7]
    engine.dispose()


def test_a_rate_asks_a_short_wait_and_refills_on_the_wall_clock(database_url: str) -> None:
    engine, clock = make_engine(database_url), FakeClock()
    budget = _budget(engine, RelayLimits(per_minute=60, per_day=1000), clock)
    assert _granted(budget, D, 10) == 3, "a minute's bucket saves up a 25th of its limit"
    waiting = budget.take(D)
    assert waiting.why == "its rate limit" and 0 < waiting.wait <= 1.0
    clock.now += 1.0
    assert budget.take(D) == NOW
    assert budget.left_today == 1000 - 4
    engine.dispose()
