"""SmtpTransport against real SMTP servers on loopback: reuse, classification, reconnection;
each with a server that offers PIPELINING (MAIL, RCPT and DATA in one write) and one that does
not (a reply awaited for each)."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from nurture.engine.ports import OutgoingMessage, SendErrorKind
from nurture.setting_values import parse_smtp_url
from nurture.smtp.factory import transport_from_settings
from nurture.smtp.transports import MAX_REPLY_CHARS, SmtpTransport
from tests.support.smtp import RecordingSmtpServer, SilentServer

SENDER = "hello@nurture.test"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def smtp_server(request: pytest.FixtureRequest) -> Iterator[RecordingSmtpServer]:
    with RecordingSmtpServer(pipelining=request.param) as server:
        yield server


def outgoing(to: str = "ada@example.test", subject: str = "Hello") -> OutgoingMessage:
    message = EmailMessage()
    message["From"] = f"Nurture <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@nurture.test>"
    message.set_content(f"Body of {subject}\n")
    return OutgoingMessage(
        envelope_from=SENDER,
        recipients=(to,),
        data=message.as_bytes(policy=policy.SMTP),
        message_id=message["Message-ID"],
    )


def transport_for(url: str, *, timeout: float = 5.0, **kwargs: object) -> SmtpTransport:
    return SmtpTransport(parse_smtp_url(url), timeout=timeout, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def transport(smtp_url: str) -> Iterator[SmtpTransport]:
    with transport_for(smtp_url) as transport:
        yield transport


def test_several_sends_reuse_one_connection(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    for n in range(3):
        result = transport.send(outgoing(f"reader{n}@example.test", f"Message {n}"))
        assert result.ok, result
        assert result.code == 250
        assert result.error_kind is None
        assert "queued" in result.message

    received = smtp_server.wait_for(3)
    assert smtp_server.connections == 1
    assert [m.message["Subject"] for m in received] == ["Message 0", "Message 1", "Message 2"]
    assert received[0].envelope_from == SENDER
    assert received[0].recipients == ("reader0@example.test",)
    assert received[0].data == outgoing("reader0@example.test", "Message 0").data


def test_permanent_refusal_of_a_recipient_keeps_the_connection_usable(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    smtp_server.faults.reject_recipient("gone@example.test", "550 5.1.1 <gone@example.test> unknown")

    refused = transport.send(outgoing("gone@example.test"))
    accepted = transport.send(outgoing("ada@example.test", "After the bounce"))

    assert not refused.ok
    assert refused.code == 550
    assert refused.error_kind is SendErrorKind.PERMANENT
    assert "5.1.1" in refused.message
    assert accepted.ok, accepted
    assert [m.message["Subject"] for m in smtp_server.wait_for(1)] == ["After the bounce"]
    assert smtp_server.connections == 1


def test_temporary_data_failure_then_success(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    smtp_server.faults.fail_data(2)

    first, second, third = (transport.send(outgoing()) for _ in range(3))

    for result in (first, second):
        assert not result.ok
        assert result.code == 451
        assert result.error_kind is SendErrorKind.TEMPORARY
        assert result.message == "4.3.0 Try again later"
    assert third.ok, third
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.connections == 1


def test_temporary_refusal_of_a_recipient(smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    smtp_server.faults.reject_recipient("busy@example.test", "452 4.2.2 Mailbox full")

    result = transport.send(outgoing("busy@example.test"))

    assert (result.ok, result.code, result.error_kind) == (False, 452, SendErrorKind.TEMPORARY)
    assert transport.send(outgoing()).ok


def test_421_is_temporary_and_drops_the_connection(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    smtp_server.faults.fail_data(1, "421 4.3.2 Shutting down")

    result = transport.send(outgoing())
    assert (result.ok, result.code, result.error_kind) == (False, 421, SendErrorKind.TEMPORARY)
    assert not transport.connected

    assert transport.send(outgoing()).ok
    assert smtp_server.connections == 2


def test_sender_refusal_is_not_a_bounce(smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    smtp_server.faults.reject_sender()
    result = transport.send(outgoing())
    assert (result.ok, result.code, result.error_kind) == (False, 553, SendErrorKind.TEMPORARY)

    smtp_server.faults.mail_reply = None
    assert transport.send(outgoing()).ok
    assert smtp_server.connections == 1


def test_a_421_to_mail_drops_the_connection_and_the_next_send_reconnects(
        smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    smtp_server.faults.reject_sender("421 4.3.2 Closing, try later")
    result = transport.send(outgoing())
    assert (result.ok, result.code, result.error_kind) == (False, 421, SendErrorKind.TEMPORARY)
    assert not transport.connected

    smtp_server.faults.mail_reply = None
    assert transport.send(outgoing()).ok
    assert smtp_server.connections == 2


def test_a_relay_that_offers_pipelining_gets_the_envelope_in_one_write(
        smtp_server: RecordingSmtpServer, transport: SmtpTransport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert transport.send(outgoing("first@example.test")).ok  # connected, greeted, EHLO said
    writes: list[bytes | str] = []
    original = smtplib.SMTP.send

    def counted(smtp: smtplib.SMTP, data: bytes | str) -> None:
        writes.append(data)
        original(smtp, data)

    monkeypatch.setattr(smtplib.SMTP, "send", counted)
    assert transport.send(outgoing("second@example.test")).ok
    # MAIL, RCPT and DATA together, then the body; or each command on its own.
    assert len(writes) == (2 if smtp_server.pipelining else 4)
    assert [m.recipients for m in smtp_server.wait_for(2)] == [
        ("first@example.test",), ("second@example.test",)]


def test_long_replies_are_truncated(smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    smtp_server.faults.fail_data(1, "554 5.7.1 " + "x" * 900)

    result = transport.send(outgoing())

    assert result.error_kind is SendErrorKind.PERMANENT
    assert len(result.message) == MAX_REPLY_CHARS


def test_stopped_server_is_a_connection_failure_and_a_restart_reconnects(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    assert transport.send(outgoing(subject="Before")).ok
    smtp_server.stop()

    stale = transport.send(outgoing(subject="Stale connection"))
    refused = transport.send(outgoing(subject="Nobody listening"))
    smtp_server.start()
    after = transport.send(outgoing(subject="After restart"))

    assert (stale.ok, stale.error_kind) == (False, SendErrorKind.CONNECTION)
    assert (refused.ok, refused.error_kind) == (False, SendErrorKind.CONNECTION)
    assert str(smtp_server.port) in refused.message
    assert after.ok, after
    assert [m.message["Subject"] for m in smtp_server.wait_for(2)] == ["Before", "After restart"]
    assert smtp_server.connections == 2


def test_an_idle_connection_is_probed_so_a_restart_costs_no_failure(
    smtp_server: RecordingSmtpServer, smtp_url: str
) -> None:
    with transport_for(smtp_url, probe_idle_after=0.0) as transport:
        assert transport.send(outgoing(subject="Before")).ok
        smtp_server.stop()
        smtp_server.start()

        assert transport.send(outgoing(subject="After restart")).ok

    assert len(smtp_server.wait_for(2)) == 2


def test_silent_server_times_out_as_a_connection_failure(silent_server: SilentServer) -> None:
    with transport_for(silent_server.url, timeout=1.0) as transport:
        started = time.monotonic()
        result = transport.send(outgoing())
        elapsed = time.monotonic() - started

    assert (result.ok, result.error_kind) == (False, SendErrorKind.CONNECTION)
    assert 0.9 <= elapsed < 3.0


def test_drop_during_data_is_a_connection_failure(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    smtp_server.faults.drop_during_data()

    dropped = transport.send(outgoing(subject="Dropped"))
    after = transport.send(outgoing(subject="Next"))

    assert (dropped.ok, dropped.code, dropped.error_kind) == (False, None, SendErrorKind.CONNECTION)
    assert after.ok, after
    assert [m.message["Subject"] for m in smtp_server.wait_for(1)] == ["Next"]
    assert smtp_server.connections == 2


def test_partial_refusal_counts_as_sent(smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    smtp_server.faults.reject_recipient("gone@example.test")
    message = outgoing()
    both = OutgoingMessage(
        envelope_from=SENDER, recipients=("ada@example.test", "gone@example.test"), data=message.data
    )

    result = transport.send(both)

    assert result.ok
    assert "1 recipient(s) refused (550)" in result.message
    assert smtp_server.wait_for(1)[0].recipients == ("ada@example.test",)


def test_international_address_uses_smtputf8(
    smtp_server: RecordingSmtpServer, transport: SmtpTransport
) -> None:
    result = transport.send(outgoing("zoë@exämple.test"))

    assert result.ok, result
    assert smtp_server.wait_for(1)[0].recipients == ("zoë@exämple.test",)


def test_international_address_without_smtputf8_is_permanent() -> None:
    with RecordingSmtpServer(smtputf8=False) as server, transport_for(server.url) as transport:
        refused = transport.send(outgoing("zoë@exämple.test"))
        accepted = transport.send(outgoing())

    assert (refused.ok, refused.code, refused.error_kind) == (False, None, SendErrorKind.PERMANENT)
    assert "SMTPUTF8" in refused.message
    assert accepted.ok, accepted
    assert server.connections == 1


def test_noop_check_and_close(smtp_server: RecordingSmtpServer, smtp_url: str) -> None:
    transport = transport_for(smtp_url)
    assert transport.noop_check()
    assert transport.connected
    transport.close()
    assert not transport.connected
    transport.close()  # closing twice is harmless

    smtp_server.stop()
    assert not transport.noop_check()


def test_transport_from_settings(smtp_server: RecordingSmtpServer, smtp_url: str) -> None:
    from nurture.config import load_settings

    with transport_from_settings(load_settings(smtp_url=smtp_url)) as transport:
        assert transport.send(outgoing()).ok
    assert len(smtp_server.wait_for(1)) == 1


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_context(files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*files)
    return context


@pytest.mark.parametrize("mode", ["starttls", "tls"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # smtps is all TLS
def test_tls_and_login(mode: str, tls_files: tuple[Path, Path]) -> None:
    server_context = _server_context(tls_files)
    server = RecordingSmtpServer(
        starttls_context=server_context if mode == "starttls" else None,
        tls_context=server_context if mode == "tls" else None,
        credentials=("robot", "s3cret"),
    )
    client_context = ssl.create_default_context(cafile=str(tls_files[0]))
    with server, transport_for(server.url, ssl_context=client_context) as transport:
        assert transport.send(outgoing()).ok
        assert transport.send(outgoing()).ok
    assert len(server.wait_for(2)) == 2
    assert server.connections == 1


def test_untrusted_certificate_is_a_connection_failure(tls_files: tuple[Path, Path]) -> None:
    with RecordingSmtpServer(starttls_context=_server_context(tls_files)) as server:
        with transport_for(server.url) as transport:
            result = transport.send(outgoing())
        assert (result.ok, result.error_kind) == (False, SendErrorKind.CONNECTION)
        assert "CERTIFICATE_VERIFY_FAILED" in result.message
        assert server.messages == []


def test_wrong_password_is_a_connection_failure_not_a_bounce(tls_files: tuple[Path, Path]) -> None:
    server_context = _server_context(tls_files)
    client_context = ssl.create_default_context(cafile=str(tls_files[0]))
    server = RecordingSmtpServer(starttls_context=server_context, credentials=("robot", "right"))
    with server, transport_for(server.url.replace("right", "wrong"),
                               ssl_context=client_context) as transport:  # fmt: skip
        result = transport.send(outgoing())
    assert (result.ok, result.code, result.error_kind) == (False, 535, SendErrorKind.CONNECTION)


def test_the_relay_receives_what_smtplib_sendmail_sends(
        smtp_server: RecordingSmtpServer, transport: SmtpTransport) -> None:
    bodies = [b"Subject: dots\r\n\r\n.leading\r\n..two\r\nplain\r\n.\r\n",
              b"Subject: no final line end\r\n\r\nlast line",
              b"Subject: international\r\n\r\nHello\r\n"]
    recipients = ["ada@example.test", "Ada <ada@example.test>", "bé@exämple.test"]
    for body, to in zip(bodies, recipients, strict=True):
        message = OutgoingMessage(envelope_from=SENDER, recipients=(to,), data=body)
        with smtplib.SMTP("127.0.0.1", smtp_server.port) as smtp:
            smtp.sendmail(SENDER, [to], body, ["SMTPUTF8"] if not to.isascii() else [])
        assert transport.send(message).ok
    received = smtp_server.wait_for(6)
    by_smtplib, by_us = received[0::2], received[1::2]
    assert [(m.envelope_from, m.recipients, m.data) for m in by_us] == [
        (m.envelope_from, m.recipients, m.data) for m in by_smtplib]
