"""The outcome writer: writes on its own thread, counts what waits, merges what is handed over
while a write runs, and raises a failed write in the caller's thread at its next call."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from nurture.engine.outcome_writer import OutcomeWriter
from nurture.engine.ports import DeliveryStatus, Outcome

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def outcomes(count: int) -> list[Outcome]:
    return [Outcome(uuid4(), DeliveryStatus.SENT, T0) for _ in range(count)]


def test_what_is_handed_over_during_a_write_goes_in_the_next_one() -> None:
    release = threading.Event()
    written: list[int] = []

    def write(batch: list[Outcome]) -> None:
        release.wait(5)
        written.append(len(batch))

    with OutcomeWriter(write) as writer:
        writer.write(outcomes(3))
        writer.write(outcomes(2))
        writer.write(outcomes(4))
        assert writer.pending == 9, "nothing is written while the first write waits"
        release.set()
        writer.flush()
        assert writer.pending == 0
    # The first write took what was there when it started; the rest went together.
    assert sum(written) == 9 and len(written) <= 2


def test_a_failed_write_is_raised_at_the_next_call_and_its_outcomes_stay_pending() -> None:
    def write(batch: list[Outcome]) -> None:
        raise ConnectionError("the database went away")

    with OutcomeWriter(write) as writer:
        writer.write(outcomes(2))
        with pytest.raises(ConnectionError):
            writer.flush()
        with pytest.raises(ConnectionError):
            writer.write(outcomes(1))
        assert writer.pending == 2


def test_wait_below_returns_once_there_is_room() -> None:
    gate = threading.Semaphore(0)

    def write(batch: list[Outcome]) -> None:
        gate.acquire(timeout=5)

    with OutcomeWriter(write) as writer:
        writer.write(outcomes(5))
        gate.release()
        writer.wait_below(5)
        assert writer.pending < 5
