"""How many messages the dispatcher hands the relay ahead of its replies."""

from __future__ import annotations

import pytest

from nurture.engine.pacing import IN_FLIGHT_LIMIT, Pace


def test_one_ahead_until_the_relay_pace_is_known() -> None:
    pace = Pace()
    assert pace.window(0.1) == 1
    pace.replied(handed_at=0.0, at=0.001)
    assert pace.window(0.1) == 1  # one reply says nothing about the time per message


@pytest.mark.parametrize(("per_message", "window"), [
    (0.001, 100), (0.02, 5), (0.05, 2), (0.2, 1), (5.0, 1),
])
def test_the_window_holds_about_send_ahead_seconds_of_the_relay(per_message: float,
                                                                window: int) -> None:
    pace = Pace()
    at = 0.0
    for _ in range(20):
        pace.replied(handed_at=0.0, at=at)
        at += per_message
    assert pace.window(0.1) == min(window, IN_FLIGHT_LIMIT)


def test_waiting_for_the_next_message_is_not_counted_as_the_relay_time() -> None:
    pace = Pace()
    pace.replied(handed_at=0.0, at=1.000)
    # Handed over 50 ms after the last reply (a claim ran in between), answered 2 ms later.
    pace.replied(handed_at=1.050, at=1.052)
    assert pace.per_message == pytest.approx(0.002)
    assert pace.window(0.1) == min(50, IN_FLIGHT_LIMIT)



def test_the_pace_follows_a_relay_that_slows_down() -> None:
    pace = Pace()
    at = 0.0
    for _ in range(10):
        pace.replied(handed_at=0.0, at=at)
        at += 0.001
    assert pace.window(0.1) == IN_FLIGHT_LIMIT
    for _ in range(20):
        pace.replied(handed_at=0.0, at=at)
        at += 0.05
    assert pace.window(0.1) <= 2
