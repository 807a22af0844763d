"""One message's SMTP conversation as smtplib's sendmail holds it, cut in two: everything up to the
body, then the relay's verdict on it; the envelope and the dot-stuffed body are made ready before.

Between the halves the relay digests the body, and the relay process prepares the next message.
The replies, the exceptions and the connection handling are sendmail's own (CPython 3.11+).
With a relay that offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write and their
replies are read together: one round trip where sendmail waits for three; the relay process
writes the next message's envelope right behind a body, so each message costs one round trip."""

from __future__ import annotations

import contextlib
import re
import smtplib
from dataclasses import dataclass
from functools import lru_cache

from nurture.engine.ports import OutgoingMessage

_CRLF = b"\r\n"
_LEADING_DOT = re.compile(rb"(?m)^\.")
# An address smtplib.quoteaddr would return unchanged between angle brackets: no display name,
# comment, quoting or route for email.utils.parseaddr to take apart.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


@dataclass(frozen=True)
class PreparedMessage:
    """A message made ready for the wire."""

    message: OutgoingMessage
    sender: str
    """MAIL's address, between angle brackets."""
    recipients: tuple[tuple[str, str], ...]
    """(address, RCPT's address between angle brackets) for each recipient."""
    size: int
    utf8: bool
    """An address is not ASCII: the relay must offer SMTPUTF8."""
    body: bytes
    """The data with leading dots doubled, ending in CRLF . CRLF."""


def prepare(message: OutgoingMessage) -> PreparedMessage:
    data = wire = message.wire()
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(_CRLF):
        data += _CRLF
    return PreparedMessage(
        message=message,
        sender=_quoted(message.envelope_from),
        recipients=tuple((address, _quoted(address)) for address in message.recipients),
        size=len(wire),
        utf8=not all(a.isascii() for a in (message.envelope_from, *message.recipients)),
        body=data + b"." + _CRLF,
    )


@lru_cache(maxsize=256)
def _quoted_slowly(address: str) -> str:
    return smtplib.quoteaddr(address)


def _quoted(address: str) -> str:
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return _quoted_slowly(address)


def pipelines(smtp: smtplib.SMTP) -> bool:
    """The relay offers PIPELINING (after EHLO)."""
    return bool(smtp.does_esmtp and smtp.has_extn("pipelining"))


def start(smtp: smtplib.SMTP, prepared: PreparedMessage, *,
          envelope_sent: bool = False) -> dict[str, tuple[int, bytes]]:
    """MAIL, RCPT, DATA and the body, as sendmail sends them; the recipients refused (while at
    least one is accepted). Raises what sendmail raises for a refusal before the body.
    `envelope_sent`: `send_envelope` wrote MAIL, RCPT and DATA already (behind the body before)."""
    smtp.ehlo_or_helo_if_needed()
    if envelope_sent or pipelines(smtp):
        return _start_pipelined(smtp, prepared, envelope_sent=envelope_sent)
    smtp.putcmd("mail", f"FROM:{prepared.sender}{_mail_options(smtp, prepared)}")
    code, reply = smtp.getreply()
    if code != 250:
        _after_refusal(smtp, code)
        raise smtplib.SMTPSenderRefused(code, reply, prepared.message.envelope_from)
    refused = _recipients(smtp, prepared)
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    smtp.send(prepared.body)
    return refused


def send_envelope(smtp: smtplib.SMTP, prepared: PreparedMessage) -> None:
    """MAIL, RCPT and DATA in one write, their replies left to `start(envelope_sent=True)`. Only
    to a relay that `pipelines`: behind the body of the message before, RFC 2920 allows it."""
    commands = [f"MAIL FROM:{prepared.sender}{_mail_options(smtp, prepared)}"]
    commands += [f"RCPT TO:{quoted}" for _, quoted in prepared.recipients]
    commands.append("DATA")
    smtp.send("".join(f"{command}\r\n" for command in commands))


def _start_pipelined(smtp: smtplib.SMTP, prepared: PreparedMessage, *,
                     envelope_sent: bool) -> dict[str, tuple[int, bytes]]:
    """`start` in one write: every reply is still read, in order, and each refusal ends as
    sendmail's would (a relay answers a DATA that follows a refused envelope with 503 or 554; if
    it says 354 anyway, an empty body ends that transaction before RSET)."""
    if not envelope_sent:
        send_envelope(smtp, prepared)
    mail_code, mail_reply = smtp.getreply()
    if mail_code == 421:  # the relay is closing: the rest will not be answered
        smtp.close()
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, prepared.message.envelope_from)
    refused: dict[str, tuple[int, bytes]] = {}
    for address, _ in prepared.recipients:
        _rcpt_reply(smtp, address, refused)
    data_code, data_reply = smtp.getreply()
    if mail_code != 250 or len(refused) == len(prepared.recipients):
        if data_code == 354:
            smtp.send(b"." + _CRLF)
            smtp.getreply()
        if mail_code != 250:
            _after_refusal(smtp, mail_code)
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, prepared.message.envelope_from)
        _reset(smtp)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_reply)
    smtp.send(prepared.body)
    return refused


def _mail_options(smtp: smtplib.SMTP, prepared: PreparedMessage) -> str:
    """MAIL's parameters as sendmail adds them: SIZE when the relay offers it, SMTPUTF8 for an
    address that is not ASCII (refused before MAIL when the relay does not offer it)."""
    options = []
    if smtp.does_esmtp:
        if smtp.has_extn("size"):
            options.append(f"size={prepared.size}")
        if prepared.utf8:
            options.append("SMTPUTF8")
    if not options:
        return ""
    if prepared.utf8:
        if not smtp.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        smtp.command_encoding = "utf-8"
    return " " + " ".join(options)


def _recipients(smtp: smtplib.SMTP, prepared: PreparedMessage) -> dict[str, tuple[int, bytes]]:
    """RCPT for each recipient; the refused ones. Raises when all are refused, or at once when
    the relay is closing the connection (421)."""
    refused: dict[str, tuple[int, bytes]] = {}
    for address, quoted in prepared.recipients:
        smtp.putcmd("rcpt", f"TO:{quoted}")
        _rcpt_reply(smtp, address, refused)
    if len(refused) == len(prepared.recipients):
        _reset(smtp)
        raise smtplib.SMTPRecipientsRefused(refused)
    return refused


def _rcpt_reply(smtp: smtplib.SMTP, address: str, refused: dict[str, tuple[int, bytes]]) -> None:
    """One RCPT's reply: a refusal is noted; a 421 closes the connection and ends it all."""
    code, reply = smtp.getreply()
    if code not in (250, 251):
        refused[address] = (code, reply)
    if code == 421:
        smtp.close()
        raise smtplib.SMTPRecipientsRefused(refused)


def complete(smtp: smtplib.SMTP, *, next_envelope_sent: bool = False) -> None:
    """The relay's verdict on the body; raises SMTPDataError when it is not 250. With the next
    message's envelope already behind the body, no RSET follows a refusal: the verdict ended the
    transaction, and an RSET now would land inside the next one."""
    code, reply = smtp.getreply()
    if code != 250:
        if code == 421 or not next_envelope_sent:
            _after_refusal(smtp, code)
        raise smtplib.SMTPDataError(code, reply)


def _after_refusal(smtp: smtplib.SMTP, code: int) -> None:
    """As sendmail does: 421 means the relay is closing the connection, so close it here too;
    after any other refusal RSET starts the next message afresh."""
    if code == 421:
        smtp.close()
    else:
        _reset(smtp)


def _reset(smtp: smtplib.SMTP) -> None:
    """RSET; a relay already gone is no new error."""
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()
