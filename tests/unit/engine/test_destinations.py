"""Pacing per destination group: a 4.7.x deferral holds that group alone, with a backoff that
doubles while it keeps deferring and starts again after an acceptance; the window of messages in
flight falls to one and grows back; a group's own cap and the operator's groups."""

from __future__ import annotations

from datetime import UTC, datetime

from nurture.engine.destinations import MAX_BACKOFF, MIN_BACKOFF, DestinationPacer
from nurture.engine.pacing import SEND_AHEAD_LIMIT
from nurture.engine.ports import SendErrorKind, SendResult
from nurture.engine.replies import destination_deferral
from nurture.setting_values import DomainGroup, with_defaults

AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
OK = SendResult(ok=True, code=250)
GMAIL_SLOW = SendResult(ok=False, code=421, error_kind=SendErrorKind.TEMPORARY,
                        message="4.7.0 Try again later, closing connection. <ana@gmail.com>")
BUSY = SendResult(ok=False, code=451, error_kind=SendErrorKind.TEMPORARY,
                  message="4.3.0 Mail server temporarily rejected message")


def test_only_a_4_7_temporary_reply_is_a_request_to_slow_down() -> None:
    assert destination_deferral(GMAIL_SLOW)
    assert destination_deferral(SendResult(ok=False, code=451, error_kind=SendErrorKind.TEMPORARY,
                                           message="4.7.500 Server busy, please try again later"))
    assert not destination_deferral(BUSY)
    assert not destination_deferral(SendResult(ok=False, code=550, message="5.7.1 Rejected",
                                               error_kind=SendErrorKind.PERMANENT))
    assert not destination_deferral(OK)


def test_a_deferral_holds_that_group_alone_and_the_backoff_doubles() -> None:
    pacer = DestinationPacer()
    gmail, other = pacer.group_of("ana@GoogleMail.com"), pacer.group_of("bo@example.org")
    assert (gmail.name, other.name) == ("gmail", "example.org")
    assert pacer.held_for(gmail, 100.0, AT) == (0.0, "")

    pacer.handed_over(gmail)
    pacer.answered(gmail, GMAIL_SLOW, 100.0)
    held, why = pacer.held_for(gmail, 100.0, AT)
    assert held == MIN_BACKOFF and "gmail asked us to slow down" in why
    assert pacer.held_for(other, 100.0, AT) == (0.0, "")

    # The rest of a burst already in flight says the same: one hold, not one per reply.
    pacer.handed_over(gmail)
    pacer.answered(gmail, GMAIL_SLOW, 100.5)
    assert pacer.held_for(gmail, 100.5, AT)[0] == MIN_BACKOFF - 0.5
    # Deferring again after the hold: twice as long, up to the ceiling.
    holds = []
    now = 101.0
    for _ in range(12):
        pacer.handed_over(gmail)
        pacer.answered(gmail, GMAIL_SLOW, now)
        held = pacer.held_for(gmail, now, AT)[0]
        holds.append(held)
        now += held
    assert holds[:3] == [2.0, 4.0, 8.0] and holds[-1] == MAX_BACKOFF
    # One acceptance: the next deferral is held for the shortest backoff again.
    pacer.handed_over(gmail)
    pacer.answered(gmail, OK, now)
    pacer.handed_over(gmail)
    pacer.answered(gmail, GMAIL_SLOW, now)
    assert pacer.held_for(gmail, now, AT)[0] == MIN_BACKOFF


def test_the_window_falls_to_one_and_grows_back_with_acceptances() -> None:
    pacer = DestinationPacer()
    gmail = pacer.group_of("ana@gmail.com")
    for _ in range(SEND_AHEAD_LIMIT - 1):
        pacer.handed_over(gmail)
    assert not pacer.full(gmail)
    pacer.handed_over(gmail)
    assert pacer.full(gmail), "at most what the sender holds, until the group says otherwise"
    for _ in range(SEND_AHEAD_LIMIT):
        pacer.answered(gmail, GMAIL_SLOW, 0.0)  # the whole burst deferred
    (view,) = pacer.view(10.0)
    assert (view.in_flight, view.window, view.deferrals) == (0, 1, SEND_AHEAD_LIMIT)
    # Probing again, one at a time, then more as it keeps accepting.
    grown = []
    for _ in range(200):
        pacer.handed_over(gmail)
        grown.append(pacer.full(gmail))
        pacer.answered(gmail, OK, 10.0)
    (view,) = pacer.view(10.0)
    assert grown[0] and not grown[-1] and view.window > 16
    assert "<address>" in view.last_reply and "@" not in view.last_reply, "no address kept"


def test_a_group_s_own_concurrency_and_the_operator_s_groups() -> None:
    own = DomainGroup("gmail", frozenset({"gmail.com"}), concurrency=2)
    corporate = DomainGroup("corp", frozenset({"corp.example", "googlemail.com"}))
    groups = with_defaults([own, corporate])
    assert [group.name for group in groups] == ["gmail", "corp", "yahoo", "outlook"]
    pacer = DestinationPacer(groups)
    gmail = pacer.group_of("a@gmail.com")
    assert pacer.group_of("a@googlemail.com").name == "corp"
    pacer.handed_over(gmail)
    assert not pacer.full(gmail)
    pacer.handed_over(gmail)
    assert pacer.full(gmail)
    pacer.answered(gmail, None, 0.0)  # not attempted: only the count moves
    assert not pacer.full(gmail) and pacer.held_for(gmail, 0.0, AT) == (0.0, "")
