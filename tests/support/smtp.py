"""Real SMTP servers on loopback for tests: a recording aiosmtpd server with injectable faults, and
a silent one that never answers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMessage:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    message: EmailMessage
    at: float = field(default_factory=time.monotonic)
    """When the server accepted it (the monotonic clock): for rates seen at the relay."""


DROP = "drop"
"""A DATA action: close the connection after the message data arrives, before any reply."""


@dataclass
class Faults:
    """What the server does wrong, set by a test before (or between) sends."""

    mail_reply: str | None = None
    """The reply to every MAIL FROM, e.g. "553 5.7.1 Sender not allowed"; None accepts."""
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    """Lower-cased address -> the reply to its RCPT, e.g. "550 5.1.1 No such user"."""
    data_actions: deque[str | None] = field(default_factory=deque)
    """Consumed one per DATA command: a reply line, DROP, or None to accept; once empty, DATA
    succeeds."""
    domain_replies: dict[str, str] = field(default_factory=dict)
    """Lower-cased domain -> the reply to the RCPT of any address there."""
    rcpt_by_domain: Counter[str] = field(default_factory=Counter)
    """Every RCPT the server was given, by the address's domain (refused or not)."""

    def reject_sender(self, reply: str = "553 5.7.1 Sender address rejected") -> None:
        self.mail_reply = reply

    def reject_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        self.rcpt_replies[address.lower()] = reply

    def defer_domain(self, domain: str, reply: str = "421 4.7.0 Try again later") -> None:
        """Answer every recipient at `domain` as a destination slowing a sender down does."""
        self.domain_replies[domain.lower()] = reply

    def fail_data(self, times: int, reply: str = "451 4.3.0 Try again later") -> None:
        self.data_actions.extend([reply] * times)

    def drop_during_data(self, times: int = 1) -> None:
        self.data_actions.extend([DROP] * times)


class _Handler:
    def __init__(self, server: RecordingSmtpServer) -> None:
        self._server = server

    async def handle_EHLO(
        self,
        smtp: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self._server._count_connection(session)
        if self._server.pipelining:
            # aiosmtpd reads pipelined commands in order anyway; it only does not say so.
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self,
        smtp: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self._server.faults.mail_reply
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        smtp: SmtpProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        faults = self._server.faults
        domain = address.rpartition("@")[2].lower()
        faults.rcpt_by_domain[domain] += 1
        reply = faults.rcpt_replies.get(address.lower(), faults.domain_replies.get(domain))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        actions = self._server.faults.data_actions
        action = actions.popleft() if actions else None
        if action == DROP:
            cast(asyncio.Transport, smtp.transport).abort()
            return "421 never sent: the connection is gone"
        if action is not None:
            return action
        self._server._record(envelope)
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's self-test connects to it."""

    def _trigger_server(self) -> None:
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _authenticate(username: str, password: str) -> Any:
    def authenticator(
        server: SmtpProtocol, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself then answers 235 or 535.
        return AuthResult(success=ok, handled=False)

    return authenticator


class RecordingSmtpServer:
    """An aiosmtpd server on 127.0.0.1 that keeps every accepted message. stop() then start() reuses
    the same port, so a client can reconnect to a "restarted" server.

    starttls_context offers STARTTLS; tls_context makes the whole connection TLS (smtps);
    credentials require AUTH (over TLS only); smtputf8=False stops offering SMTPUTF8;
    pipelining=False stops offering PIPELINING (clients then wait for each reply)."""

    def __init__(
        self,
        *,
        starttls_context: ssl.SSLContext | None = None,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self.faults = Faults()
        self.pipelining = pipelining
        self._smtputf8 = smtputf8
        self._starttls_context = starttls_context
        self._tls_context = tls_context
        self._credentials = credentials
        self._port = 0
        self._controller: _Controller | None = None
        self._messages: list[ReceivedMessage] = []
        self._peers: set[tuple[str, int]] = set()
        self._changed = threading.Condition()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        scheme = "smtps" if self._tls_context else "smtp+starttls" if self._starttls_context else "smtp"
        user = f"{self._credentials[0]}:{self._credentials[1]}@" if self._credentials else ""
        return f"{scheme}://{user}{HOST}:{self.port}"

    def start(self) -> None:
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": self._smtputf8}
        if self._starttls_context is not None:
            kwargs.update(tls_context=self._starttls_context, require_starttls=True)
        if self._credentials is not None:
            kwargs.update(
                authenticator=_authenticate(*self._credentials),
                auth_required=True,
                # aiosmtpd only knows about STARTTLS; with smtps the whole session is TLS anyway.
                auth_require_tls=self._tls_context is None,
            )
        controller = _Controller(
            _Handler(self),
            hostname=HOST,
            port=self._port,
            server_hostname="recording.test",
            ssl_context=self._tls_context,
            **kwargs,
        )
        controller.start()
        self._port = controller.port
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> RecordingSmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._changed:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """TCP connections that said EHLO since the first start. Counted by client address, since
        aiosmtpd starts a new Session after STARTTLS on the same connection."""
        with self._changed:
            return len(self._peers)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """At least `count` messages, waiting for them up to `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise AssertionError(
                    f"expected {count} message(s) within {timeout} s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def _count_connection(self, session: Session) -> None:
        peer = cast(tuple[str, int], session.peer)  # aiosmtpd annotates it as a str
        with self._changed:
            self._peers.add((peer[0], peer[1]))

    def _record(self, envelope: Envelope) -> None:
        data = cast(bytes, envelope.original_content)
        received = ReceivedMessage(
            envelope_from=cast(str, envelope.mail_from),
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            message=message_from_bytes(data, policy=policy.default),
        )
        with self._changed:
            self._messages.append(received)
            self._changed.notify_all()


class SilentServer:
    """Listens on 127.0.0.1 and never calls accept(): the kernel completes the TCP handshake, so
    clients connect fine and then wait forever for the greeting."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the server has not been started")
        return cast(int, self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def start(self) -> None:
        self._socket = socket.create_server((HOST, 0), backlog=16)

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> SilentServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def smtp_server() -> Iterator[RecordingSmtpServer]:
    with RecordingSmtpServer() as server:
        yield server


@pytest.fixture
def smtp_url(smtp_server: RecordingSmtpServer) -> str:
    return f"smtp://{HOST}:{smtp_server.port}"


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server
