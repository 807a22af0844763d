"""A pool of connections to one relay, against real SMTP servers and real relay processes: answers
in the order of `begin` across connections, the load shared, a connection dropped mid-run (its
unattempted messages come back None, the rest go through the others), and everything down."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from nurture.config import load_settings
from nurture.engine.ports import PipelinedTransport, SendErrorKind, SendResult
from nurture.setting_values import parse_smtp_url
from nurture.smtp.factory import transport_from_settings
from nurture.smtp.failover import FailoverTransport
from nurture.smtp.pool import ConnectionPool
from nurture.smtp.relay_process import ProcessTransport
from tests.integration.smtp.test_relay_process import message
from tests.support.ports import free_port
from tests.support.smtp import RecordingSmtpServer

WINDOW = 9
"""Messages begun ahead of the oldest unfinished one, as the dispatcher keeps a batch in flight."""


def connection(url: str) -> ProcessTransport:
    return ProcessTransport(parse_smtp_url(url), timeout=5)


@pytest.fixture
def pool(smtp_server: RecordingSmtpServer) -> Iterator[ConnectionPool]:
    transport = ConnectionPool([connection(smtp_server.url) for _ in range(3)])
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture
def three_servers() -> Iterator[list[RecordingSmtpServer]]:
    servers = [RecordingSmtpServer() for _ in range(3)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def pipelined(pool: ConnectionPool, numbers: range, window: int = WINDOW) -> list[SendResult | None]:
    """Begin the messages keeping at most `window` unfinished; the outcomes in the order begun."""
    outcomes: list[SendResult | None] = []
    ahead = 0
    for number in numbers:
        pool.begin(message(number))
        ahead += 1
        if ahead >= window:
            outcomes.append(result_of(pool))
            ahead -= 1
    outcomes.extend(result_of(pool) for _ in range(ahead))
    return outcomes


def result_of(pool: ConnectionPool) -> SendResult | None:
    answer = pool.finish()
    if answer is None:
        return None
    assert 0.0 <= answer.age < 60, "how long ago the relay answered"
    return answer.result


def ids(server: RecordingSmtpServer) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for m in server.messages)


def mid(number: int) -> str:
    return f"<m{number}@nurture.test>"


def test_answers_come_back_in_the_order_begun_with_each_message_its_own(
        pool: ConnectionPool, smtp_server: RecordingSmtpServer) -> None:
    assert isinstance(pool, PipelinedTransport)
    for refused in (4, 7, 20):
        smtp_server.faults.reject_recipient(f"p{refused}@example.org")
    pool.reset()
    for number in range(30):
        pool.begin(message(number))
    outcomes = [result_of(pool) for _ in range(30)]

    assert all(o is not None for o in outcomes)
    assert [n for n, o in enumerate(outcomes) if o is not None and not o.ok] == [4, 7, 20]
    assert all((o.code, o.error_kind) == (550, SendErrorKind.PERMANENT)
               for n, o in enumerate(outcomes) if o is not None and n in (4, 7, 20))
    assert all(o.code == 250 for n, o in enumerate(outcomes) if o is not None and n not in (4, 7, 20))
    assert pool.carried == [10, 10, 10], "each begin goes to the least busy, round robin among equals"
    assert smtp_server.connections == 3, "one SMTP connection per relay process"
    received = Counter(m.recipients[0] for m in smtp_server.wait_for(27))
    assert received == Counter(f"p{n}@example.org" for n in range(30) if n not in (4, 7, 20))
    assert pool.send(message(99)).ok, "plain sends work between batches"


def test_a_steady_window_spreads_the_load_over_every_connection(
        pool: ConnectionPool, smtp_server: RecordingSmtpServer) -> None:
    pool.reset()
    outcomes = pipelined(pool, range(150))

    assert all(o is not None and o.ok for o in outcomes)
    print(f"\n[pool] 150 messages, window {WINDOW}, per connection {pool.carried}")
    assert sum(pool.carried) == 150 and min(pool.carried) >= 150 // 3 - WINDOW
    assert smtp_server.connections == 3
    received = ids(smtp_server)
    assert len(received) == 150 and set(received.values()) == {1}


def test_a_dropped_connection_leaves_the_rest_to_the_others_and_nothing_is_answered_twice(
        pool: ConnectionPool, smtp_server: RecordingSmtpServer) -> None:
    pool.reset()
    before = pipelined(pool, range(30))
    assert all(o is not None and o.ok for o in before)
    smtp_server.faults.drop_during_data(1)  # whichever connection carries the next message
    carried_before = pool.carried
    during = pipelined(pool, range(30, 150))

    failed = [30 + n for n, o in enumerate(during) if o is not None and not o.ok]
    untried = [30 + n for n, o in enumerate(during) if o is None]
    delivered = [30 + n for n, o in enumerate(during) if o is not None and o.ok]
    print(f"\n[pool] one connection dropped: failed {failed}, not attempted {untried}, "
          f"per connection {pool.carried}, down {pool.down}")
    assert len(failed) == 1
    lost = during[failed[0] - 30]
    assert lost is not None and lost.error_kind is SendErrorKind.CONNECTION
    assert untried, "messages begun behind the failure on its connection were not attempted"
    assert all(number < failed[0] + WINDOW for number in untried), \
        "once the pool read the failure, no more messages went to that connection"
    assert pool.down.count(True) == 1
    dropped = pool.down.index(True)
    grew = [after - earlier for after, earlier in zip(pool.carried, carried_before, strict=True)]
    assert all(grew[n] > grew[dropped] for n in range(3) if n != dropped), \
        "the connections that work took the rest"
    assert delivered == [n for n in range(30, 150) if n not in failed and n not in untried]
    received = ids(smtp_server)
    assert set(received.values()) == {1}, "no message arrived twice"
    assert set(received) == {mid(n) for n in [*range(30), *delivered]}, \
        "what was answered ok arrived; the failed and the unattempted did not"

    # A new batch: the dropped connection is reset and shared again; the unattempted go through.
    pool.reset()
    assert pool.down == [False, False, False]
    again = pipelined(pool, range(150, 180))
    retried = [pool.send(message(number)) for number in [*failed, *untried]]
    assert all(o is not None and o.ok for o in again) and all(o.ok for o in retried)
    assert all(after > earlier for after, earlier in zip(pool.carried, carried_before, strict=True))
    received = ids(smtp_server)
    assert len(received) == 180 and set(received.values()) == {1}


def test_a_connection_whose_server_goes_away_mid_run(three_servers: list[RecordingSmtpServer]) -> None:
    a, b, c = three_servers
    pool = ConnectionPool([connection(server.url) for server in three_servers])
    try:
        pool.reset()
        first = pipelined(pool, range(60))
        shares = [len(ids(server)) for server in three_servers]
        b.stop()
        second = pipelined(pool, range(60, 180))
    finally:
        pool.close()

    assert all(o is not None and o.ok for o in first)
    assert shares == [20, 20, 20]
    failed = [60 + n for n, o in enumerate(second) if o is not None and not o.ok]
    untried = [60 + n for n, o in enumerate(second) if o is None]
    print(f"\n[pool] B stopped: failed {failed}, not attempted {untried}, "
          f"A {len(ids(a))} B {len(ids(b))} C {len(ids(c))}")
    assert len(failed) == 1 and pool.down == [False, True, False]
    assert all(o is None or o.ok or o.error_kind is SendErrorKind.CONNECTION for o in second)
    delivered = {mid(60 + n) for n, o in enumerate(second) if o is not None and o.ok}
    assert len(delivered) == 120 - 1 - len(untried)
    assert set(ids(a)) | set(ids(c)) >= delivered, "everything after went through A and C"
    everything = ids(a) + ids(b) + ids(c)
    assert set(everything.values()) == {1}, "no message arrived twice"


def test_with_every_connection_down_begin_still_hands_over_and_reset_tries_again() -> None:
    nowhere = f"smtp://127.0.0.1:{free_port()}"
    pool = ConnectionPool([connection(nowhere), connection(nowhere)])
    try:
        pool.reset()
        for number in range(4):
            pool.begin(message(number))
        outcomes = [result_of(pool) for _ in range(4)]
        assert pool.down == [True, True]
        pool.begin(message(4))  # every connection is down: one still takes it, and skips it
        skipped = result_of(pool)
        pool.reset()
        pool.begin(message(5))
        tried_again = result_of(pool)
        alone = pool.send(message(6))
    finally:
        pool.close()

    first, second, *behind = outcomes
    assert first is not None and first.error_kind is SendErrorKind.CONNECTION
    assert second is not None and second.error_kind is SendErrorKind.CONNECTION
    assert behind == [None, None], "not attempted behind each connection's failure"
    assert skipped is None
    assert tried_again is not None and tried_again.error_kind is SendErrorKind.CONNECTION
    assert not alone.ok and alone.error_kind is SendErrorKind.CONNECTION


def test_misuse_is_a_bug_and_says_so(pool: ConnectionPool) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ConnectionPool([])
    with pytest.raises(RuntimeError, match="without a message begun"):
        pool.finish()
    pool.begin(message(0))
    with pytest.raises(RuntimeError, match="not finished"):
        pool.send(message(1))
    assert result_of(pool) is not None
    assert "(3 connections)" in pool.where


def test_the_settings_give_each_relay_its_connections(tmp_path: Path) -> None:
    relays = tmp_path / "relays.yaml"
    relays.write_text("relays:\n  - name: a\n    url: smtp://127.0.0.1:2525\n    connections: 3\n"
                      "  - name: b\n    url: smtp://127.0.0.1:2526\n")
    one = transport_from_settings(load_settings(smtp_connections=2), separate_process=True)
    several = transport_from_settings(load_settings(relays_file=relays), separate_process=True)
    try:
        assert isinstance(one, ConnectionPool) and one.carried == [0, 0]
        assert isinstance(several, FailoverTransport)
        first, second = (relay.transport for relay in several.relays)
        assert isinstance(first, ConnectionPool) and len(first.carried) == 3
        assert not isinstance(second, ConnectionPool)
    finally:
        one.close()
        several.close()
