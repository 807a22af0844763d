"""The relay process: the SMTP conversation in a child process, pipelined, against a real server."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest

from nurture.engine.ports import OutgoingMessage, PipelinedTransport, SendErrorKind, SendResult
from nurture.setting_values import parse_smtp_url
from nurture.smtp.relay_process import REPLY_BATCH, ProcessTransport
from tests.support.smtp import RecordingSmtpServer


def message(number: int, to: str | None = None) -> OutgoingMessage:
    recipient = to or f"p{number}@example.org"
    data = (f"From: hello@nurture.test\r\nTo: {recipient}\r\nMessage-ID: <m{number}@nurture.test>\r\n"
            f"Subject: number {number}\r\n\r\nBody {number}\r\n").encode("ascii")
    return OutgoingMessage(envelope_from="hello@nurture.test", recipients=(recipient,), data=data,
                           message_id=f"<m{number}@nurture.test>")


def finish(relay: ProcessTransport) -> SendResult | None:
    answer = relay.finish()
    if answer is None:
        return None
    assert 0.0 <= answer.age < 60, "how long ago the relay answered"
    return answer.result


@pytest.fixture
def relay(smtp_server: RecordingSmtpServer) -> Iterator[ProcessTransport]:
    with ProcessTransport(parse_smtp_url(smtp_server.url), timeout=5) as transport:
        yield transport


def test_pipelined_sends_arrive_in_order_with_their_outcomes(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    assert isinstance(relay, PipelinedTransport)
    smtp_server.faults.reject_recipient("p3@example.org")
    relay.reset()
    for number in range(6):
        relay.begin(message(number))
    outcomes = [finish(relay) for _ in range(6)]

    assert [(o.ok, o.code) for o in outcomes if o is not None] == [
        (True, 250), (True, 250), (True, 250), (False, 550), (True, 250), (True, 250)]
    assert outcomes[3] is not None and outcomes[3].error_kind is SendErrorKind.PERMANENT
    assert [m.recipients[0] for m in smtp_server.wait_for(5)] == [
        f"p{n}@example.org" for n in (0, 1, 2, 4, 5)]
    assert smtp_server.connections == 1, "one persistent connection, held by the child"
    assert relay.send(message(9)).ok, "plain sends work between batches"


def test_the_child_assembles_messages_and_one_it_cannot_fails_alone(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    from dataclasses import replace

    from nurture.rendering.wire import MessageParts

    def parts_of(number: int, head: object) -> OutgoingMessage:
        return replace(message(number), data=b"", parts=MessageParts(
            head, b"B", f"Text {number}\n".encode(), b"<p>Html</p>"))  # type: ignore[arg-type]

    relay.reset()
    relay.begin(parts_of(1, b"Subject: one\r\n\r\n"))
    relay.begin(parts_of(2, "not bytes: a bug"))
    relay.begin(parts_of(3, b"Subject: three\r\n\r\n"))
    outcomes = [finish(relay) for _ in range(3)]

    assert [o.ok for o in outcomes if o is not None] == [True, False, True]
    broken = outcomes[1]
    assert broken is not None and broken.error_kind is SendErrorKind.TEMPORARY
    assert broken.message == "could not assemble the message (TypeError)"
    received = smtp_server.wait_for(2)
    assert [m.data.split(b"\r\n")[0] for m in received] == [b"Subject: one", b"Subject: three"]
    assert b"Text 3" in received[1].data


@pytest.mark.parametrize("fault", ["451 4.3.0 Try again later", "554 5.6.0 Rejected content",
                                   "421 4.3.2 Closing", "drop"])
def test_a_refused_body_with_the_next_envelope_behind_it_leaves_the_rest_intact(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer, fault: str) -> None:
    """The child writes each message's envelope behind the body before (one round trip a
    message): a verdict refusing that body must not spoil the next transaction."""
    relay.reset()
    relay.begin(message(0))  # the session is open before the messages under test
    assert finish(relay) is not None
    smtp_server.faults.data_actions.extend([None, None, "drop" if fault == "drop" else fault])
    for number in range(1, 7):
        relay.begin(message(number))
    outcomes = [finish(relay) for _ in range(6)]

    third = outcomes[2]
    assert third is not None and not third.ok
    if fault == "drop":
        assert third.error_kind is SendErrorKind.CONNECTION
        assert outcomes[3:] == [None, None, None], "behind a lost connection, nothing is tried"
        relay.reset()
        for number in range(4, 7):
            relay.begin(message(number))
        outcomes[3:] = [finish(relay) for _ in range(3)]
    assert all(o is not None and o.ok for i, o in enumerate(outcomes) if i != 2)
    arrived = [m.data.split(b"\r\n")[2] for m in smtp_server.wait_for(6)]
    assert arrived == [f"Message-ID: <m{n}@nurture.test>".encode() for n in (0, 1, 2, 4, 5, 6)]


def test_behind_a_connection_failure_nothing_is_attempted_until_reset(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    relay.reset()
    relay.begin(message(0))
    assert finish(relay) is not None
    smtp_server.stop()
    for number in range(1, 4):
        relay.begin(message(number))
    first, *behind = (finish(relay) for _ in range(3))

    assert first is not None and first.error_kind is SendErrorKind.CONNECTION
    assert behind == [None, None], "not attempted: the batch releases them untouched"
    smtp_server.start()
    relay.reset()
    relay.begin(message(4))
    again = finish(relay)
    assert again is not None and again.ok


def test_a_killed_child_fails_what_it_held_and_is_replaced(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    assert relay.send(message(0)).ok
    first_pid = relay.pid
    assert first_pid is not None and first_pid != os.getpid()
    os.kill(first_pid, signal.SIGKILL)
    relay.begin(message(1))
    relay.begin(message(2))
    lost = [finish(relay), finish(relay)]
    assert all(o is not None and o.error_kind is SendErrorKind.CONNECTION for o in lost)

    assert relay.send(message(3)).ok
    assert relay.pid not in (None, first_pid), "a new child"
    assert {m.recipients[0] for m in smtp_server.wait_for(2)} >= {"p0@example.org", "p3@example.org"}


def test_an_unreachable_relay_is_a_connection_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ProcessTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}"), timeout=2) as relay:
        outcome = relay.send(message(0))
    assert not outcome.ok and outcome.error_kind is SendErrorKind.CONNECTION


def test_close_quits_and_the_child_exits(smtp_server: RecordingSmtpServer) -> None:
    relay = ProcessTransport(parse_smtp_url(smtp_server.url), timeout=5)
    assert relay.send(message(0)).ok
    child = relay.pid
    assert child is not None
    relay.close()
    assert relay.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_finish_without_begin_is_a_bug_and_says_so(relay: ProcessTransport) -> None:
    with pytest.raises(RuntimeError, match="without a message begun"):
        relay.finish()


def test_reset_after_an_interrupted_batch_never_mixes_up_replies(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    smtp_server.faults.reject_recipient("p1@example.org")
    relay.reset()
    relay.begin(message(1))  # its refusal is never read: the batch was interrupted
    relay.reset()
    relay.begin(message(2))
    outcome = finish(relay)
    assert outcome is not None and outcome.ok, "p2's own reply, not p1's refusal"


def test_many_messages_ahead_come_back_in_order_whatever_the_child_groups(
        relay: ProcessTransport, smtp_server: RecordingSmtpServer) -> None:
    count = 3 * REPLY_BATCH + 5
    smtp_server.faults.reject_recipient(f"p{REPLY_BATCH}@example.org")
    relay.reset()
    for number in range(count):
        relay.begin(message(number))
    outcomes = [finish(relay) for _ in range(count)]

    assert [n for n, o in enumerate(outcomes) if o is None or not o.ok] == [REPLY_BATCH]
    assert len(smtp_server.wait_for(count - 1)) == count - 1
    # Then a single send, which waits for its own answer.
    relay.begin(message(100))
    assert finish(relay) is not None
    assert relay.send(message(101)).ok
