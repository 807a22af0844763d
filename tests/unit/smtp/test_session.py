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
