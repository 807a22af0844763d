"""The first email after confirming goes out at once, whatever the hour; the send window applies
from the second step on, and to an operator's enroll or an import from the first step on.

In Kolkata (UTC+05:30, no DST) 03:00 local is 21:30 UTC the day before: deep in the night, far
outside the 09:00-20:00 window of the sequences."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from nurture.content.delays import parse_delay
from nurture.content.library import Content, ContentHolder
from nurture.domain.model import Condition, Profile, SendWindow, Sequence, Step
from nurture.domain.people import make_person
from nurture.engine.decisions import AT_ONCE_FOR, MessageToSend, decide, outcome_of_send
from nurture.engine.enrollment import new_enrollment
from nurture.engine.planner import plan_next, timeline
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    ClaimedDelivery,
    ConsentRecord,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    Outcome,
    SendResult,
    SubscriberSnapshot,
    SubscriberStatus,
)
from tests.support.paths import ROOT
from tests.unit.engine.test_decisions import LETTERHEAD

KOLKATA = ZoneInfo("Asia/Kolkata")
# Tuesday 3 March 2026, 03:00 in Kolkata.
NIGHT = datetime(2026, 3, 3, 3, 0, tzinfo=KOLKATA).astimezone(UTC)
NINE_AM = datetime(2026, 3, 3, 9, 0, tzinfo=KOLKATA).astimezone(UTC)
DAYTIME = SendWindow(days=frozenset(range(7)), start=time(9, 0), end=time(20, 0))
PROFILE = Profile(time_zone="Asia/Kolkata", hesitations=frozenset({"stigma"}))
POLICY = DispatchPolicy()
OK = SendResult(ok=True, code=250, message="2.0.0 queued")


def step(key: str, delay: str, *, immediate: bool = False,
         when: Condition | None = None) -> Step:
    return Step(key=key, template=f"{key}.md", subject=key, delay=parse_delay(delay),
                immediate=immediate, when=when)


def sequence(*, immediate: bool = True, when: Condition | None = None) -> Sequence:
    return Sequence(key="s", name="S", window=DAYTIME, steps=(
        step("welcome", "0h", immediate=immediate, when=when), step("second", "2d")))


def local(at: datetime) -> datetime:
    return at.astimezone(KOLKATA)


# -- the planner -------------------------------------------------------------------------------


def test_an_immediate_first_step_is_due_at_the_confirmation_itself() -> None:
    plan = plan_next(sequence(), PROFILE, done_step_keys=frozenset(), anchor=NIGHT,
                     at_confirmation=True)
    assert plan.step is not None and plan.step.key == "welcome"
    assert plan.due_at == NIGHT and plan.immediate
    first = plan.as_next_delivery()
    assert first is not None and first.immediate and first.due_at == NIGHT


def test_the_second_step_still_lands_inside_its_window() -> None:
    sent_at = NIGHT + timedelta(seconds=5)
    plan = plan_next(sequence(), PROFILE, done_step_keys=frozenset({"welcome"}), anchor=sent_at,
                     at_confirmation=True)
    assert plan.step is not None and plan.step.key == "second" and not plan.immediate
    assert plan.due_at is not None
    assert local(plan.due_at) == datetime(2026, 3, 5, 9, 0, tzinfo=KOLKATA), \
        "two days after 03:00 is 03:00 again: moved to the 09:00 opening"


def test_an_operator_enroll_at_three_in_the_morning_waits_for_the_window() -> None:
    plan = plan_next(sequence(), PROFILE, done_step_keys=frozenset(), anchor=NIGHT)
    assert plan.due_at == NINE_AM and not plan.immediate


def test_a_windowed_first_step_that_is_not_immediate_still_waits_after_confirming() -> None:
    plan = plan_next(sequence(immediate=False), PROFILE, done_step_keys=frozenset(),
                     anchor=NIGHT, at_confirmation=True)
    assert plan.due_at == NINE_AM and not plan.immediate


def test_when_the_immediate_first_step_is_skipped_the_next_keeps_its_window() -> None:
    only_fear = Condition(hesitations_any=frozenset({"fear_of_blame"}))
    plan = plan_next(sequence(when=only_fear), PROFILE, done_step_keys=frozenset(),
                     anchor=NIGHT, at_confirmation=True)
    assert plan.step is not None and plan.step.key == "second" and not plan.immediate
    assert plan.due_at is not None and local(plan.due_at).time() == time(9, 0)


def test_the_timeline_shows_the_confirmation_path_only_when_asked() -> None:
    by_operator = timeline(sequence(), PROFILE, start=NIGHT)
    assert by_operator[0].due_at_utc == NINE_AM and not by_operator[0].immediate
    assert by_operator[0].moved_by_window
    confirming = timeline(sequence(), PROFILE, start=NIGHT, at_confirmation=True)
    assert confirming[0].due_at_utc == NIGHT and confirming[0].immediate
    assert not confirming[0].moved_by_window
    assert not confirming[1].immediate and local(confirming[1].due_at_local).time() == time(9, 0)


def test_new_enrollment_plans_at_once_only_for_a_confirmation() -> None:
    content = ContentHolder(ROOT / "sequences", ROOT / "templates").current
    person = make_person(email="asha@example.org", first_name="Asha", time_zone="Asia/Kolkata",
                         hesitations=["stigma"])
    confirmed = new_enrollment(person, content, "partner-hesitant",
                               ConsentRecord(kind="confirm", source="web-form v1"), NIGHT,
                               at_confirmation=True)
    assert confirmed.first_delivery is not None
    assert confirmed.first_delivery.due_at == NIGHT and confirmed.first_delivery.immediate
    imported = new_enrollment(person, content, "partner-hesitant",
                              ConsentRecord(kind="import", source="csv:people.csv"), NIGHT)
    assert imported.first_delivery is not None
    assert imported.first_delivery.due_at == NINE_AM and not imported.first_delivery.immediate


# -- at send time ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def content() -> Content:
    return ContentHolder(ROOT / "sequences", ROOT / "templates").current


def claim(*, immediate: bool, enrolled_at: datetime = NIGHT, attempts: int = 0,
          due_at: datetime = NIGHT) -> ClaimedDelivery:
    subscriber = SubscriberSnapshot(id=UUID(int=7), email="asha@example.org", first_name="Asha",
                                    status=SubscriberStatus.ACTIVE, time_zone="Asia/Kolkata",
                                    hesitations=frozenset({"stigma"}), discreet=False,
                                    locale="en-IN")
    enrollment = EnrollmentSnapshot(id=UUID(int=8), sequence_key="partner-hesitant",
                                    status=EnrollmentStatus.ACTIVE, paused_until=None,
                                    enrolled_at=enrolled_at, done_step_keys=frozenset(),
                                    last_sent_at=None)
    return ClaimedDelivery(id=uuid4(), kind=DeliveryKind.STEP, step_key="welcome", due_at=due_at,
                           attempts=attempts, subscriber=subscriber, enrollment=enrollment,
                           suppressed=False, immediate=immediate)


def test_an_immediate_first_email_at_three_in_the_morning_is_sent(content: Content) -> None:
    ready = decide(claim(immediate=True), content, POLICY, LETTERHEAD, NIGHT)
    assert isinstance(ready, MessageToSend), ready
    sent = outcome_of_send(ready, OK, POLICY, NIGHT)
    assert sent.status is DeliveryStatus.SENT
    second = sent.next_delivery
    assert second is not None and second.step_key == "why-they-hesitate"
    assert not second.immediate, "only the first step goes at once"
    assert local(second.due_at) == datetime(2026, 3, 5, 9, 0, tzinfo=KOLKATA)


def test_its_retries_soon_after_are_not_held_by_the_window(content: Content) -> None:
    retry = NIGHT + AT_ONCE_FOR - timedelta(minutes=1)
    ready = decide(claim(immediate=True, attempts=5, due_at=retry), content, POLICY, LETTERHEAD,
                   retry)
    assert isinstance(ready, MessageToSend), ready


def test_after_an_hour_an_immediate_email_waits_for_the_window_like_any_other(
        content: Content) -> None:
    late = NIGHT + AT_ONCE_FOR + timedelta(minutes=1)
    held = decide(claim(immediate=True, attempts=6, due_at=late), content, POLICY, LETTERHEAD,
                  late)
    assert isinstance(held, Outcome) and held.status is DeliveryStatus.QUEUED
    assert held.error == "outside send window" and held.due_at == NINE_AM


def test_a_first_email_that_is_not_immediate_is_held_at_night(content: Content) -> None:
    held = decide(claim(immediate=False), content, POLICY, LETTERHEAD, NIGHT)
    assert isinstance(held, Outcome) and held.status is DeliveryStatus.QUEUED
    assert held.error == "outside send window" and held.due_at == NINE_AM
