"""Time for tests: a fixed instant inside the send window, and a clock that moves only when told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# A Monday, 10:00 in London (GMT in March before the clocks change): inside the send window.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
