"""The SMTP conversation cut in two: its envelope and body are what smtplib's sendmail makes."""

from __future__ import annotations

import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.engine.ports import OutgoingMessage
from nurture.smtp.session import _quoted, prepare

ADDRESSES = [
    "ada@example.test", "a.b+c-d_e@sub.example.org", "O'Neil@example.test", "ünïcode@exämple.test",
    "Ada <ada@example.test>", '"quoted local"@example.test', "ada@[127.0.0.1]", "", "no-at-sign",
    "a@b@c", " spaced@example.test", "ada@example.test ", "(note) ada@example.test",
    "<ada@example.test>", "ada@example.test, bob@example.test",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_envelope_addresses_are_quoted_as_smtplib_quotes_them(address: str) -> None:
    assert _quoted(address) == smtplib.quoteaddr(address)


def _what_smtplib_sends(data: bytes) -> bytes:
    quoted = smtplib._quote_periods(data)  # type: ignore[attr-defined]  # the oracle
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    return quoted + b".\r\n"


_LINES = st.lists(
    st.sampled_from([b"", b".", b"..", b".leading dot", b"plain", b"a.b", b" .space", b"=2E"]),
    max_size=12)


@given(lines=_LINES, final_crlf=st.booleans())
def test_the_body_is_dot_stuffed_and_ended_as_smtplib_does(lines: list[bytes],
                                                           final_crlf: bool) -> None:
    data = b"\r\n".join(lines) + (b"\r\n" if final_crlf else b"")
    message = OutgoingMessage(envelope_from="a@example.test", recipients=("b@example.test",),
                              data=data)
    prepared = prepare(message)
    assert prepared.body == _what_smtplib_sends(data)
    assert prepared.size == len(data), "SIZE counts the message before dot-stuffing"


def test_a_non_ascii_address_asks_for_smtputf8() -> None:
    plain = prepare(OutgoingMessage("a@example.test", ("b@example.test",), b"x\r\n"))
    international = prepare(OutgoingMessage("a@example.test", ("bé@exämple.test",), b"x\r\n"))
    assert (plain.utf8, international.utf8) == (False, True)


def test_a_message_whose_bodies_are_left_to_encode_is_assembled_where_it_is_sent() -> None:
    from datetime import UTC, datetime

    from nurture.rendering.mime import build_message, message_parts
    from nurture.rendering.types import Links, RenderedEmail
    from nurture.rendering.wire import MessageParts

    rendered = RenderedEmail("Nurture <hello@nurture.test>", "A note", "Preheader",
                             "<p>Hello\n.dot</p>\n" * 40, "Hello\n.dot line\n" * 40)
    links = Links(unsubscribe_url="https://nurture.test/u/t",
                  preferences_url="https://nurture.test/p/t")
    when = datetime(2026, 12, 2, 10, tzinfo=UTC)
    parts = message_parts(rendered, to="ada@example.test", message_id="<m1@nurture.test>",
                          links=links, date=when)
    assert isinstance(parts, MessageParts)
    whole = build_message(rendered, to="ada@example.test", message_id="<m1@nurture.test>",
                          links=links, date=when)
    # The same message but for its random boundary.
    assert parts.wire().replace(parts.boundary, b"B") == whole.replace(
        whole.split(b'boundary="')[1].split(b'"')[0], b"B")
    message = OutgoingMessage(envelope_from="hello@nurture.test", recipients=("ada@example.test",),
                              data=b"", parts=parts)
    prepared = prepare(message)
    assert prepared.body == _what_smtplib_sends(parts.wire())
    assert prepared.size == len(parts.wire())
