"""Several relays behind one transport, against real SMTP servers and real relay processes: a
relay down from the start, one that dies mid-run and comes back, a 421, a destination's 4.7.x
deferral, a recipient refused, shares by weight, and daily caps that pass messages on and then
hold them. The breakers' cooldowns run on a clock the test moves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nurture.engine.ports import SendErrorKind, SendResult
from nurture.engine.relay_limits import Budget, relay_key
from nurture.engine.throttle import BreakerState, CircuitBreaker
from nurture.relay_settings import Strategy
from nurture.setting_values import RelayLimits, parse_smtp_url
from nurture.smtp.failover import FailoverTransport, Relay
from nurture.smtp.relay_process import ProcessTransport
from nurture.store.database import make_engine, upgrade
from nurture.store.sql.tokens import SqlTokenStore
from tests.integration.smtp.test_relay_process import message
from tests.support.ports import free_port
from tests.support.smtp import RecordingSmtpServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def second_server() -> Iterator[RecordingSmtpServer]:
    with RecordingSmtpServer() as server:
        yield server


def relay(name: str, url: str, clock: Clock, weight: float = 1.0) -> Relay:
    return Relay(name, ProcessTransport(parse_smtp_url(url), timeout=5),
                 CircuitBreaker(failures=1, cooldown=30, max_cooldown=600, clock=clock, name=name),
                 weight=weight)


def pipelined(transport: FailoverTransport, numbers: range) -> list[SendResult]:
    """Begin every message, then finish them in order, keeping at most 20 ahead."""
    results: list[SendResult] = []
    ahead = 0
    for number in numbers:
        transport.begin(message(number))
        ahead += 1
        if ahead > 20:
            answer = transport.finish()
            assert answer is not None
            results.append(answer.result)
            ahead -= 1
    for _ in range(ahead):
        answer = transport.finish()
        assert answer is not None
        results.append(answer.result)
    return results


def ids(server: RecordingSmtpServer) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for m in server.messages)


def test_a_relay_down_from_the_start_leaves_everything_to_the_next(
        smtp_server: RecordingSmtpServer) -> None:
    clock = Clock()
    down = f"smtp://127.0.0.1:{free_port()}"
    transport = FailoverTransport([relay("a", down, clock), relay("b", smtp_server.url, clock)],
                                  Strategy.FAILOVER)
    try:
        results = pipelined(transport, range(200))
    finally:
        transport.close()
    received = ids(smtp_server)
    print(f"\n[relays] A down from the start: 200 messages, B received {sum(received.values())}, "
          f"duplicates {sum(received.values()) - len(received)}, moved {transport.relays[0].failed_over}")
    assert all(result.ok and result.relay == "b" for result in results)
    assert len(received) == 200 and set(received.values()) == {1}
    assert transport.relays[0].breaker.state is BreakerState.OPEN


def test_a_relay_that_dies_mid_run_hands_over_and_takes_back_after_its_trial(
        smtp_server: RecordingSmtpServer, second_server: RecordingSmtpServer) -> None:
    clock = Clock()
    a, b = smtp_server, second_server
    transport = FailoverTransport([relay("a", a.url, clock), relay("b", b.url, clock)],
                                  Strategy.FAILOVER)
    try:
        first = pipelined(transport, range(0, 150))
        a.stop()
        middle = pipelined(transport, range(150, 400))
        a.start()  # the same port: A is back
        still_b = pipelined(transport, range(400, 450))  # within A's cooldown
        clock.now += 31
        back = pipelined(transport, range(450, 600))
    finally:
        transport.close()
    assert all(r.ok and r.relay == "a" for r in first)
    assert all(r.ok for r in middle) and Counter(r.relay for r in middle)["b"] > 0
    assert all(r.ok and r.relay == "b" for r in still_b)
    assert all(r.ok for r in back) and back[-1].relay == "a"
    received = ids(a) + ids(b)
    duplicates = sum(received.values()) - len(received)
    print(f"\n[relays] A dies mid-run, comes back: 600 messages, A {sum(ids(a).values())}, "
          f"B {sum(ids(b).values())}, lost {600 - len(received)}, duplicates {duplicates}; "
          f"after the cooldown {Counter(r.relay for r in back)}")
    assert len(received) == 600, "nothing lost"
    assert duplicates <= 21, "no more duplicates than were in flight when A died"
    # While A's trial is in flight the next messages go to B; once it answers, A takes the rest.
    assert Counter(r.relay for r in back)["a"] >= 150 - 21, "traffic returned to A"


def test_a_421_moves_the_message_and_a_refused_recipient_stays_refused(
        smtp_server: RecordingSmtpServer, second_server: RecordingSmtpServer) -> None:
    clock = Clock()
    a, b = smtp_server, second_server
    a.faults.fail_data(1, reply="421 4.3.2 Service shutting down")
    a.faults.reject_recipient("nobody@example.org")
    transport = FailoverTransport([relay("a", a.url, clock), relay("b", b.url, clock)],
                                  Strategy.FAILOVER)
    try:
        moved = transport.send(message(1))
        clock.now += 31  # A's trial after its cooldown
        refused = transport.send(message(2, to="nobody@example.org"))
    finally:
        transport.close()
    assert (moved.ok, moved.relay) == (True, "b")
    assert (refused.ok, refused.error_kind, refused.code, refused.relay) == \
        (False, SendErrorKind.PERMANENT, 550, "a")
    assert "<m2@nurture.test>" not in ids(b), "a refused recipient is never tried elsewhere"


def test_weighted_relays_share_by_weight(smtp_server: RecordingSmtpServer,
                                         second_server: RecordingSmtpServer) -> None:
    clock = Clock()
    transport = FailoverTransport([relay("a", smtp_server.url, clock, weight=3),
                                   relay("b", second_server.url, clock, weight=1)],
                                  Strategy.WEIGHTED)
    try:
        results = pipelined(transport, range(400))
    finally:
        transport.close()
    assert all(result.ok for result in results)
    assert Counter(result.relay for result in results) == Counter({"a": 300, "b": 100})


def test_a_destination_s_request_to_slow_down_stays_with_its_relay(
        smtp_server: RecordingSmtpServer, second_server: RecordingSmtpServer) -> None:
    clock = Clock()
    a, b = smtp_server, second_server
    a.faults.defer_domain("gmail.com")
    transport = FailoverTransport([relay("a", a.url, clock), relay("b", b.url, clock)],
                                  Strategy.FAILOVER)
    try:
        deferred = transport.send(message(1, to="ana@gmail.com"))
        accepted = transport.send(message(2))
    finally:
        transport.close()
    # Another relay would hear the same from Gmail: the relay is fine, the destination paces.
    assert (deferred.ok, deferred.code, deferred.error_kind, deferred.relay) == \
        (False, 421, SendErrorKind.TEMPORARY, "a")
    assert (accepted.ok, accepted.relay) == (True, "a")
    assert transport.relays[0].breaker.state is BreakerState.CLOSED
    assert not b.messages


def test_spent_daily_caps_pass_messages_on_and_then_hold_them_until_midnight(
        smtp_server: RecordingSmtpServer, second_server: RecordingSmtpServer,
        tmp_path: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    upgrade(url)
    engine = make_engine(url)
    tokens = SqlTokenStore(engine)
    relays = [relay("a", smtp_server.url, clock), relay("b", second_server.url, clock)]
    for each, cap in zip(relays, (3, 2), strict=True):
        each.budget = Budget(relay_key(each.name), RelayLimits(per_day=cap), tokens)
    transport = FailoverTransport(relays, Strategy.FAILOVER)
    day = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)
    try:
        today = pipelined_at(transport, range(7), day)
        tomorrow = pipelined_at(transport, range(7, 8), day + timedelta(hours=2))
    finally:
        transport.close()
        engine.dispose()
    assert [result.relay for result in today[:5]] == ["a", "a", "a", "b", "b"]
    assert all(result.ok for result in today[:5])
    for held in today[5:]:
        assert (held.ok, held.error_kind, held.retry_in) == \
            (False, SendErrorKind.LIMITED, 90 * 60.0)
        assert held.message == ("held until 2026-12-03 00:00:00 UTC: no relay may take it before "
                                "(a: its daily cap of 3; b: its daily cap of 2)")
    assert (tomorrow[0].ok, tomorrow[0].relay) == (True, "a")
    assert len(smtp_server.messages) == 4 and len(second_server.messages) == 2


def pipelined_at(transport: FailoverTransport, numbers: range, at: datetime) -> list[SendResult]:
    """As `pipelined`, each message sent as of `at` (its run's time)."""
    for number in numbers:
        transport.begin(replace(message(number), at=at))
    results = []
    for _ in numbers:
        answer = transport.finish()
        assert answer is not None
        results.append(answer.result)
    return results
