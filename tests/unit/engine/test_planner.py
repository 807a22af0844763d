"""The planner: delays, conditions, content edits mid-sequence, send windows, time zones, DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from nurture.content.delays import DelayError, parse_delay
from nurture.domain.model import ANY_TIME, Condition, Profile, SendWindow, Sequence, Step
from nurture.engine.planner import (
    Plan,
    Skip,
    TimelineEntry,
    in_window,
    next_in_window,
    plan_next,
    timeline,
)
from nurture.engine.ports import NextDelivery

NEW_YORK = "America/New_York"
LONDON = "Europe/London"
KOLKATA = "Asia/Kolkata"
WEEKDAYS = frozenset(range(5))
OFFICE_HOURS = SendWindow(days=WEEKDAYS, start=time(9, 0), end=time(17, 0))
STIGMA = Condition(hesitations_any=frozenset({"stigma"}))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A wall-clock time in `zone`; fold=0, so an ambiguous time is its first occurrence."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone))


def step(key: str, delay: str = "0", when: Condition | None = None) -> Step:
    return Step(key=key, template=f"{key}.md", subject=key, delay=parse_delay(delay), when=when)


def sequence(*steps: Step, window: SendWindow = ANY_TIME) -> Sequence:
    return Sequence(key="welcome", name="Welcome", steps=steps, window=window)


def window(
    start: time, end: time = time(20, 0), days: frozenset[int] = frozenset(range(7))
) -> SendWindow:
    return SendWindow(days=days, start=start, end=end)


# parse_delay


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("0h", timedelta(0)),
        ("2d", timedelta(days=2)),
        ("36h", timedelta(hours=36)),
        ("1w", timedelta(weeks=1)),
        ("90m", timedelta(minutes=90)),
        ("1w2d", timedelta(days=9)),
        ("1d12h", timedelta(hours=36)),
        ("1w1d1h1m", timedelta(days=8, hours=1, minutes=1)),
        (" 2d ", timedelta(days=2)),
    ],
)
def test_parse_delay_accepts_each_form(text: str, expected: timedelta) -> None:
    assert parse_delay(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "2x", "-1d", "d2", "1.5d", "2 d", "1d1w", "1d1d", "2D", "+1d", "٣d"]
)
def test_parse_delay_rejects_bad_input_saying_the_accepted_forms(text: str) -> None:
    with pytest.raises(DelayError) as raised:
        parse_delay(text)
    message = str(raised.value)
    assert repr(text) in message
    assert "1w2d" in message and "36h" in message and "largest unit first" in message


def test_delay_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_delay("99999999999w")


# plan_next: delays and conditions


ENROLLED = utc(2026, 5, 4, 10, 0)  # a Monday


def test_first_step_is_due_after_its_own_delay_from_enrollment() -> None:
    seq = sequence(step("welcome", "0"), step("story", "2d"))
    plan = plan_next(seq, Profile(), done_step_keys=frozenset(), anchor=ENROLLED)
    assert plan == Plan(step=seq.steps[0], due_at=ENROLLED, skipped=())


def test_delays_chain_from_the_previous_send() -> None:
    seq = sequence(step("welcome"), step("story", "2d"), step("faq", "36h"))
    sent_story_at = utc(2026, 5, 6, 10, 7)
    plan = plan_next(
        seq, Profile(), done_step_keys=frozenset({"welcome", "story"}), anchor=sent_story_at
    )
    assert plan.step is not None and plan.step.key == "faq"
    assert plan.due_at == utc(2026, 5, 7, 22, 7)


def test_skipped_conditional_step_still_lets_its_delay_elapse() -> None:
    seq = sequence(step("welcome"), step("day4", "4d", when=STIGMA), step("day7", "3d"))
    plan = plan_next(seq, Profile(), done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.step is not None and plan.step.key == "day7"
    assert plan.due_at == ENROLLED + timedelta(days=7)
    assert plan.skipped == (Skip("day4", "condition not met: hesitations_any stigma"),)


def test_matching_condition_is_not_skipped() -> None:
    seq = sequence(step("welcome"), step("day4", "4d", when=STIGMA), step("day7", "3d"))
    profile = Profile(hesitations=frozenset({"stigma", "cost"}))
    plan = plan_next(seq, profile, done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.step is not None and plan.step.key == "day4"
    assert plan.due_at == ENROLLED + timedelta(days=4)
    assert plan.skipped == ()


def test_all_remaining_steps_skipped_finishes_with_the_skips_recorded() -> None:
    discreet_only = Condition(discreet=True)
    seq = sequence(
        step("welcome"), step("a", "1d", when=STIGMA), step("b", "1d", when=discreet_only)
    )
    plan = plan_next(seq, Profile(), done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.step is None and plan.due_at is None
    assert plan.skipped == (
        Skip("a", "condition not met: hesitations_any stigma"),
        Skip("b", "condition not met: discreet true"),
    )
    assert plan.as_next_delivery() is None


def test_finished_sequence_has_no_next_step() -> None:
    seq = sequence(step("welcome"), step("story", "2d"))
    plan = plan_next(
        seq, Profile(), done_step_keys=frozenset({"welcome", "story"}), anchor=ENROLLED
    )
    assert plan == Plan(step=None, due_at=None, skipped=())


def test_empty_sequence_is_finished_at_once() -> None:
    plan = plan_next(sequence(), Profile(), done_step_keys=frozenset(), anchor=ENROLLED)
    assert plan == Plan(step=None, due_at=None)


def test_due_time_is_moved_into_the_send_window_in_the_subscriber_zone() -> None:
    seq = sequence(step("welcome"), step("story", "1d"), window=OFFICE_HOURS)
    # Friday 2026-05-08 12:00 in New York plus one day is Saturday: wait for Monday 09:00 EDT.
    sent = local(NEW_YORK, 2026, 5, 8, 12, 0)
    plan = plan_next(
        seq, Profile(time_zone=NEW_YORK), done_step_keys=frozenset({"welcome"}), anchor=sent
    )
    assert plan.due_at == utc(2026, 5, 11, 13, 0)
    assert plan.due_at.tzinfo is UTC


def test_as_next_delivery_carries_key_due_time_and_skips() -> None:
    seq = sequence(step("welcome"), step("day4", "4d", when=STIGMA), step("day7", "3d"))
    plan = plan_next(seq, Profile(), done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.as_next_delivery() == NextDelivery(
        step_key="day7",
        due_at=ENROLLED + timedelta(days=7),
        skipped=(("day4", "condition not met: hesitations_any stigma"),),
    )


def test_plan_needs_step_and_due_time_together() -> None:
    with pytest.raises(ValueError):
        Plan(step=step("a"), due_at=None, skipped=())
    with pytest.raises(ValueError):
        Plan(step=None, due_at=ENROLLED, skipped=())


def test_naive_anchor_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_next(
            sequence(step("a")), Profile(), done_step_keys=frozenset(), anchor=datetime(2026, 5, 4)
        )


# plan_next: content edited while people are mid-sequence


def test_removed_step_is_ignored_and_position_falls_back_to_the_remaining_done_keys() -> None:
    # The person got welcome and story; story has since been removed from the sequence.
    seq = sequence(step("welcome"), step("faq", "2d"), step("offer", "3d"))
    plan = plan_next(
        seq, Profile(), done_step_keys=frozenset({"welcome", "story"}), anchor=ENROLLED
    )
    assert plan.step is not None and plan.step.key == "faq"
    assert plan.due_at == ENROLLED + timedelta(days=2)


def test_only_removed_done_keys_start_from_the_first_step() -> None:
    seq = sequence(step("welcome-v2"), step("faq", "2d"))
    plan = plan_next(seq, Profile(), done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.step is not None and plan.step.key == "welcome-v2"


def test_step_inserted_after_the_position_is_reached() -> None:
    seq = sequence(step("welcome"), step("story", "2d"), step("new", "1d"), step("faq", "3d"))
    plan = plan_next(
        seq, Profile(), done_step_keys=frozenset({"welcome", "story"}), anchor=ENROLLED
    )
    assert plan.step is not None and plan.step.key == "new"
    assert plan.due_at == ENROLLED + timedelta(days=1)


def test_step_inserted_before_the_position_is_not_reached() -> None:
    seq = sequence(step("welcome"), step("new", "1d"), step("story", "2d"), step("faq", "3d"))
    plan = plan_next(
        seq, Profile(), done_step_keys=frozenset({"welcome", "story"}), anchor=ENROLLED
    )
    assert plan.step is not None and plan.step.key == "faq"
    assert plan.skipped == ()


def test_changed_delay_applies_to_the_step_not_yet_queued() -> None:
    seq = sequence(step("welcome"), step("story", "5d"))
    plan = plan_next(seq, Profile(), done_step_keys=frozenset({"welcome"}), anchor=ENROLLED)
    assert plan.due_at == ENROLLED + timedelta(days=5)


def test_reordering_follows_the_furthest_done_step_in_the_new_order() -> None:
    done = frozenset({"a", "b"})
    # b moved after c: the person is now at b, so d comes next and c (now before them) is passed.
    moved_back = sequence(step("a"), step("c", "1d"), step("b", "1d"), step("d", "2d"))
    plan = plan_next(moved_back, Profile(), done_step_keys=done, anchor=ENROLLED)
    assert plan.step is not None and plan.step.key == "d"
    # b moved before a: the furthest done step is now a, so c comes next as before.
    moved_forward = sequence(step("b"), step("a", "1d"), step("c", "1d"), step("d", "2d"))
    plan = plan_next(moved_forward, Profile(), done_step_keys=done, anchor=ENROLLED)
    assert plan.step is not None and plan.step.key == "c"


# send windows


def test_inside_window_is_returned_unchanged_in_utc() -> None:
    at = local(NEW_YORK, 2026, 5, 6, 10, 15, 30)  # Wednesday
    result = next_in_window(OFFICE_HOURS, NEW_YORK, at)
    assert result == at
    assert result.tzinfo is UTC
    assert result == utc(2026, 5, 6, 14, 15, 30)
    assert in_window(OFFICE_HOURS, NEW_YORK, at)


def test_after_the_end_moves_to_the_next_day_start() -> None:
    at = local(NEW_YORK, 2026, 5, 6, 18, 0)  # Wednesday evening
    assert not in_window(OFFICE_HOURS, NEW_YORK, at)
    assert next_in_window(OFFICE_HOURS, NEW_YORK, at) == local(NEW_YORK, 2026, 5, 7, 9, 0)


def test_before_the_start_moves_to_the_same_day_start() -> None:
    at = local(NEW_YORK, 2026, 5, 6, 6, 45)
    assert next_in_window(OFFICE_HOURS, NEW_YORK, at) == utc(2026, 5, 6, 13, 0)


@pytest.mark.parametrize(
    "at",
    [
        local(NEW_YORK, 2026, 5, 8, 17, 0),  # Friday at the end
        local(NEW_YORK, 2026, 5, 9, 11, 0),  # Saturday
        local(NEW_YORK, 2026, 5, 10, 23, 59),  # Sunday night
        local(NEW_YORK, 2026, 5, 11, 8, 59, 59),  # Monday just before
    ],
)
def test_weekend_days_are_excluded(at: datetime) -> None:
    assert next_in_window(OFFICE_HOURS, NEW_YORK, at) == local(NEW_YORK, 2026, 5, 11, 9, 0)


def test_end_boundary_is_exclusive_and_start_boundary_inclusive() -> None:
    start = local(NEW_YORK, 2026, 5, 6, 9, 0)
    end = local(NEW_YORK, 2026, 5, 6, 17, 0)
    assert in_window(OFFICE_HOURS, NEW_YORK, start)
    assert next_in_window(OFFICE_HOURS, NEW_YORK, start) == start
    assert in_window(OFFICE_HOURS, NEW_YORK, end - timedelta(microseconds=1))
    assert not in_window(OFFICE_HOURS, NEW_YORK, end)
    assert next_in_window(OFFICE_HOURS, NEW_YORK, end) == local(NEW_YORK, 2026, 5, 7, 9, 0)


def test_window_is_judged_in_the_subscriber_zone_not_the_zone_of_at() -> None:
    # 23:00 UTC on Wednesday is 19:00 in New York (closed) but 04:30 Thursday in Kolkata.
    at = utc(2026, 5, 6, 23, 0)
    assert next_in_window(OFFICE_HOURS, NEW_YORK, at) == utc(2026, 5, 7, 13, 0)
    assert next_in_window(OFFICE_HOURS, KOLKATA, at) == utc(2026, 5, 7, 3, 30)


def test_single_day_window_waits_a_whole_week() -> None:
    sundays = window(time(10, 0), time(12, 0), days=frozenset({6}))
    at = local(LONDON, 2026, 5, 10, 12, 0)  # Sunday at the end
    assert next_in_window(sundays, LONDON, at) == local(LONDON, 2026, 5, 17, 10, 0)


def test_any_time_window_never_moves() -> None:
    at = utc(2026, 5, 9, 23, 59, 59)
    assert next_in_window(ANY_TIME, NEW_YORK, at) == at


@pytest.mark.parametrize(
    "bad",
    [
        SendWindow(days=frozenset()),
        SendWindow(days=frozenset({7})),
        SendWindow(start=time(17, 0), end=time(9, 0)),
        SendWindow(start=time(9, 0), end=time(9, 0)),
    ],
)
def test_invalid_windows_are_refused(bad: SendWindow) -> None:
    with pytest.raises(ValueError):
        next_in_window(bad, NEW_YORK, ENROLLED)
    with pytest.raises(ValueError):
        in_window(bad, NEW_YORK, ENROLLED)


def test_naive_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_in_window(OFFICE_HOURS, NEW_YORK, datetime(2026, 5, 6, 12, 0))


def test_unknown_zone_propagates() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        next_in_window(OFFICE_HOURS, "Mars/Olympus_Mons", ENROLLED)


# DST: America/New_York springs forward 2026-03-08 02:00 and falls back 2026-11-01 02:00.


def test_new_york_start_in_the_spring_gap_moves_to_the_end_of_the_gap() -> None:
    # 02:30 does not exist on 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT (07:00 UTC).
    early = window(time(2, 30))
    at = local(NEW_YORK, 2026, 3, 8, 0, 0)
    opening = next_in_window(early, NEW_YORK, at)
    assert opening == utc(2026, 3, 8, 7, 0)
    assert opening.astimezone(ZoneInfo(NEW_YORK)).time() == time(3, 0)
    assert in_window(early, NEW_YORK, opening)
    # The day after, 02:30 exists again (EDT, UTC-4).
    assert next_in_window(early, NEW_YORK, local(NEW_YORK, 2026, 3, 8, 21, 0)) == utc(
        2026, 3, 9, 6, 30
    )


def test_window_lost_entirely_in_the_spring_gap_waits_for_the_next_day() -> None:
    lost = window(time(2, 15), time(2, 45))
    at = local(NEW_YORK, 2026, 3, 8, 0, 0)
    assert next_in_window(lost, NEW_YORK, at) == local(NEW_YORK, 2026, 3, 9, 2, 15)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 6, 22, 0), utc(2026, 3, 7, 14, 0)),  # Saturday before: EST, UTC-5
        (utc(2026, 3, 8, 22, 0), utc(2026, 3, 9, 13, 0)),  # Monday after spring forward: EDT, UTC-4
        (utc(2026, 10, 30, 22, 0), utc(2026, 10, 31, 13, 0)),  # Saturday before fall back: EDT
        (utc(2026, 10, 31, 22, 0), utc(2026, 11, 1, 14, 0)),  # Sunday of fall back: EST already
        (utc(2026, 11, 1, 22, 0), utc(2026, 11, 2, 14, 0)),  # Monday after fall back: EST, UTC-5
    ],
)
def test_new_york_nine_oclock_maps_to_the_right_utc_hour(at: datetime, expected: datetime) -> None:
    nine = window(time(9, 0), time(12, 0))
    assert next_in_window(nine, NEW_YORK, at) == expected


def test_new_york_ambiguous_fall_back_start_uses_the_first_occurrence() -> None:
    # 01:30 happens twice on 2026-11-01: 05:30 UTC (EDT) and 06:30 UTC (EST); the first one wins.
    early = window(time(1, 30))
    assert next_in_window(early, NEW_YORK, local(NEW_YORK, 2026, 11, 1, 0, 0)) == utc(
        2026, 11, 1, 5, 30
    )


def test_new_york_repeated_hour_opens_again_at_the_second_occurrence() -> None:
    # At 01:50 EDT the 01:00-01:45 window has closed, but the clocks show 01:00 again ten minutes
    # later (01:00 EST, 06:00 UTC), which is inside the window by its wall-clock rule.
    repeated = window(time(1, 0), time(1, 45))
    # Built in UTC: PEP 495 makes an ambiguous local time unequal to every instant in another zone.
    at = utc(2026, 11, 1, 5, 50)
    assert at.astimezone(ZoneInfo(NEW_YORK)).replace(tzinfo=None) == datetime(2026, 11, 1, 1, 50)
    opening = next_in_window(repeated, NEW_YORK, at)
    assert opening == utc(2026, 11, 1, 6, 0)
    assert in_window(repeated, NEW_YORK, opening)


def test_one_day_delay_across_spring_forward_is_24_real_hours() -> None:
    # Delays are elapsed time, not calendar days: "1d" is exactly 24 hours, so across the spring
    # change the local wall clock reads one hour later (09:00 EST -> 10:00 EDT).
    seq = sequence(step("welcome"), step("next-day", "1d"), window=window(time(8, 0)))
    sent = local(NEW_YORK, 2026, 3, 7, 9, 0)
    plan = plan_next(
        seq, Profile(time_zone=NEW_YORK), done_step_keys=frozenset({"welcome"}), anchor=sent
    )
    assert plan.due_at is not None
    assert plan.due_at - sent == timedelta(hours=24)
    assert plan.due_at == utc(2026, 3, 8, 14, 0)
    assert plan.due_at.astimezone(ZoneInfo(NEW_YORK)).time() == time(10, 0)


def test_one_day_delay_across_fall_back_is_24_real_hours() -> None:
    # Same rule the other way: 24 elapsed hours after 09:00 EDT the wall clock reads 08:00 EST.
    seq = sequence(step("welcome"), step("next-day", "1d"), window=window(time(8, 0)))
    sent = local(NEW_YORK, 2026, 10, 31, 9, 0)
    plan = plan_next(
        seq, Profile(time_zone=NEW_YORK), done_step_keys=frozenset({"welcome"}), anchor=sent
    )
    assert plan.due_at is not None
    assert plan.due_at - sent == timedelta(hours=24)
    assert plan.due_at == utc(2026, 11, 1, 13, 0)
    assert plan.due_at.astimezone(ZoneInfo(NEW_YORK)).time() == time(8, 0)


# DST: Europe/London springs forward 2026-03-29 01:00 GMT and falls back 2026-10-25 02:00 BST.


def test_london_start_in_the_spring_gap() -> None:
    # 01:30 does not exist on 2026-03-29: 01:00 GMT becomes 02:00 BST at 01:00 UTC.
    early = window(time(1, 30))
    assert next_in_window(early, LONDON, utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)


def test_london_ambiguous_fall_back_start_uses_the_first_occurrence() -> None:
    # 01:30 happens at 00:30 UTC (BST) and again at 01:30 UTC (GMT) on 2026-10-25.
    early = window(time(1, 30))
    assert next_in_window(early, LONDON, utc(2026, 10, 24, 23, 0)) == utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 27, 20, 0), utc(2026, 3, 28, 9, 0)),  # Saturday before: GMT
        (utc(2026, 3, 29, 20, 0), utc(2026, 3, 30, 8, 0)),  # Monday after: BST, UTC+1
        (utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 9, 0)),  # Sunday of fall back: GMT again
        (utc(2026, 10, 25, 20, 0), utc(2026, 10, 26, 9, 0)),  # Monday after: GMT
    ],
)
def test_london_nine_oclock_maps_to_the_right_utc_hour(at: datetime, expected: datetime) -> None:
    assert next_in_window(window(time(9, 0), time(12, 0)), LONDON, at) == expected


def test_london_one_day_delay_across_spring_forward_shifts_the_wall_clock() -> None:
    # "1d" is 24 elapsed hours: 09:00 GMT on Saturday becomes 10:00 BST on Sunday.
    seq = sequence(step("welcome"), step("next-day", "1d"), window=window(time(8, 0)))
    sent = local(LONDON, 2026, 3, 28, 9, 0)
    plan = plan_next(
        seq, Profile(time_zone=LONDON), done_step_keys=frozenset({"welcome"}), anchor=sent
    )
    assert plan.due_at == utc(2026, 3, 29, 9, 0)
    assert plan.due_at.astimezone(ZoneInfo(LONDON)).time() == time(10, 0)


# Asia/Kolkata: UTC+05:30 all year, a half-hour offset and no DST.


def test_kolkata_nine_oclock_is_half_past_three_utc() -> None:
    at = utc(2026, 3, 8, 0, 0)  # 05:30 local, before the window
    assert next_in_window(window(time(9, 0)), KOLKATA, at) == utc(2026, 3, 8, 3, 30)
    assert next_in_window(window(time(9, 0)), KOLKATA, utc(2026, 11, 1, 18, 0)) == utc(
        2026, 11, 2, 3, 30
    )


def test_kolkata_half_hour_offset_decides_the_boundary() -> None:
    nine = window(time(9, 0))
    assert not in_window(nine, KOLKATA, utc(2026, 5, 6, 3, 29, 59))
    assert in_window(nine, KOLKATA, utc(2026, 5, 6, 3, 30))
    # 20:00 local is 14:30 UTC, so 14:30 UTC is already closed.
    assert not in_window(nine, KOLKATA, utc(2026, 5, 6, 14, 30))


# timeline


def test_timeline_lists_every_step_with_one_skipped() -> None:
    seq = sequence(
        step("welcome", "0"),
        step("stigma", "2d", when=STIGMA),
        step("faq", "2d"),
        step("offer", "3d"),
        window=OFFICE_HOURS,
    )
    zone = ZoneInfo(NEW_YORK)
    start = local(NEW_YORK, 2026, 5, 4, 7, 30)  # Monday, before the window opens
    entries = timeline(seq, Profile(time_zone=NEW_YORK), start=start)
    assert entries == [
        # Moved to 09:00 the same day.
        TimelineEntry(
            "welcome", utc(2026, 5, 4, 13, 0), local(NEW_YORK, 2026, 5, 4, 9, 0), None, True
        ),
        # Skipped: the slot when its delay runs out, not moved into the window.
        TimelineEntry(
            "stigma",
            utc(2026, 5, 6, 13, 0),
            local(NEW_YORK, 2026, 5, 6, 9, 0),
            "condition not met: hesitations_any stigma",
            False,
        ),
        # 2d after the skipped slot: Friday 09:00, already inside the window.
        TimelineEntry(
            "faq", utc(2026, 5, 8, 13, 0), local(NEW_YORK, 2026, 5, 8, 9, 0), None, False
        ),
        # Friday + 3d is Monday 09:00, inside the window.
        TimelineEntry(
            "offer", utc(2026, 5, 11, 13, 0), local(NEW_YORK, 2026, 5, 11, 9, 0), None, False
        ),
    ]
    assert all(entry.due_at_utc.tzinfo is UTC for entry in entries)
    assert all(entry.due_at_local.tzinfo == zone for entry in entries)


def test_timeline_moves_a_weekend_slot_and_later_steps_follow_the_actual_send() -> None:
    seq = sequence(step("welcome"), step("story", "5d"), step("faq", "1d"), window=OFFICE_HOURS)
    start = local(NEW_YORK, 2026, 5, 4, 10, 0)  # Monday
    entries = timeline(seq, Profile(time_zone=NEW_YORK), start=start)
    assert [(e.step_key, e.due_at_local, e.moved_by_window) for e in entries] == [
        ("welcome", local(NEW_YORK, 2026, 5, 4, 10, 0), False),
        ("story", local(NEW_YORK, 2026, 5, 11, 9, 0), True),  # Saturday -> Monday
        ("faq", local(NEW_YORK, 2026, 5, 12, 9, 0), False),
    ]


def test_timeline_agrees_with_plan_next_step_by_step() -> None:
    seq = sequence(
        step("a"),
        step("b", "1d", when=STIGMA),
        step("c", "36h"),
        step("d", "90m", when=Condition(discreet=False)),
        step("e", "1w"),
        window=OFFICE_HOURS,
    )
    profile = Profile(time_zone=LONDON)
    start = utc(2026, 3, 27, 16, 0)
    entries = timeline(seq, profile, start=start)
    assert [e.step_key for e in entries] == ["a", "b", "c", "d", "e"]
    done: set[str] = set()
    anchor = start
    for entry in entries:
        if entry.skipped_reason is not None:
            continue
        plan = plan_next(seq, profile, done_step_keys=frozenset(done), anchor=anchor)
        assert plan.step is not None
        assert (plan.step.key, plan.due_at) == (entry.step_key, entry.due_at_utc)
        done |= {skip.step_key for skip in plan.skipped} | {plan.step.key}
        anchor = entry.due_at_utc
