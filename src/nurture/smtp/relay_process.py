"""The SMTP conversation in a child process: a Transport whose sends are carried out by an
SmtpTransport in an interpreter of its own, fed through a socket ahead of its replies.

In one process, the thread talking to the relay must take the interpreter lock back after each of
a message's round trips while the dispatcher holds it to render the next message, and the relay
waits. Here the dispatcher writes the next messages into the socket and goes on; the child starts
each the moment the relay has answered the one before, and while the relay reads a body and
decides, it hands back the answers so far and makes the next message ready for the wire.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from nurture.engine.ports import Answer, OutgoingMessage, SendErrorKind, SendResult
from nurture.logs import configure_logging, current_format
from nurture.setting_values import SmtpEndpoint
from nurture.smtp.session import PreparedMessage, prepare
from nurture.smtp.transports import SmtpTransport

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
"""Seconds for the child to start and say it is ready (a cold interpreter start with imports)."""

_SEND, _RESET, _CLOSE = "send", "reset", "close"

REPLY_BATCH = 16
"""The child writes outcomes back when this many are waiting or when it has no message to send:
a write for each would wake the dispatcher for each, while it is rendering ahead anyway."""


class ProcessTransport:
    """A `ports.Transport` over one persistent SMTP connection held by a child process.

    `begin` hands a message over without waiting; `finish` returns the outcomes in the order the
    messages were begun. After a connection failure the child attempts none of the messages
    begun behind it (their outcome is None) until `reset`. The child is started on first use and
    again after it dies; a child that does not answer within a whole conversation's timeouts is
    killed, and its messages count as connection failures (they may or may not have arrived, as
    with a dropped socket)."""

    def __init__(self, endpoint: SmtpEndpoint, *, timeout: float, local_hostname: str | None = None,
                 log_level: str | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: a blocking socket could hang forever")
        self._endpoint = endpoint
        self._timeout = timeout
        self._local_hostname = local_hostname
        # The child logs as this process does, in the same JSON lines on the same stderr.
        self._log_level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        # One entry per message begun: None when the child will answer it, or the outcome
        # already known here (the child could not be started, or died with it outstanding).
        self._tickets: deque[SendResult | None] = deque()
        # The child's answers read and not yet finished, in order; None: not attempted.
        self._answers: deque[tuple[SendResult, float] | None] = deque()
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """host:port, safe to log."""
        return f"{self._endpoint.host}:{self._endpoint.port}"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            if self._tickets:
                raise RuntimeError("send() while messages begun are not finished")
            self._begin(message, skip_after_failure=False)
            answer = self._finish()
        assert answer is not None, "attempted unconditionally"
        return answer.result

    def reset(self) -> None:
        """Attempt messages again after a connection failure (a new batch begins)."""
        with self._lock:
            if self._tickets:
                # A batch ended without reading all its outcomes (interrupted): the next reply
                # would be taken for another message's, so start over with a new child.
                log.warning("relay process had unread outcomes; restarting it",
                            extra={"unread": len(self._tickets)})
                self._tickets.clear()
                self._stop(kill=True)
            conn = self._live_connection()
            if conn is not None:
                self._write(conn, (_RESET,))

    def begin(self, message: OutgoingMessage) -> None:
        with self._lock:
            self._begin(message, skip_after_failure=True)

    def finish(self) -> Answer | None:
        """The outcome of the earliest message begun and not finished, with how long ago the
        relay gave it; None if not attempted."""
        with self._lock:
            return self._finish()

    def _begin(self, message: OutgoingMessage, *, skip_after_failure: bool) -> None:
        try:
            conn = self._connection()
        except (OSError, EOFError, TimeoutError) as error:
            self._tickets.append(self._lost(f"could not start ({type(error).__name__})"))
            return
        if self._write(conn, (_SEND, message, skip_after_failure)):
            self._tickets.append(None)
        else:
            self._tickets.append(self._lost("ended unexpectedly"))

    def _finish(self) -> Answer | None:
        if not self._tickets:
            raise RuntimeError("finish() without a message begun")
        known = self._tickets.popleft()
        if known is not None:
            return Answer(known, 0.0)
        if self._answers:
            return self._answer(self._answers.popleft())
        conn = self._conn
        assert conn is not None, "a ticket for the child implies a live connection"
        try:
            # Each of connect, greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA and the end of
            # data may take the whole timeout before the child's socket gives up.
            if conn.poll(self._timeout * 10 + 5):
                self._answers.extend(conn.recv())
                return self._answer(self._answers.popleft())
            reason = "did not answer in time"
        except (OSError, EOFError) as error:
            reason = f"ended unexpectedly ({type(error).__name__})"
        lost = self._lost(reason)
        # The child is gone with the rest of what it was given: nothing will answer for them.
        self._tickets = deque(lost if ticket is None else ticket for ticket in self._tickets)
        return Answer(lost, 0.0)

    @staticmethod
    def _answer(reply: tuple[SendResult, float] | None) -> Answer | None:
        if reply is None:
            return None
        result, answered_at = reply
        # CLOCK_MONOTONIC is the machine's, the same in the child and here.
        return Answer(result, max(time.monotonic() - answered_at, 0.0))

    def _lost(self, reason: str) -> SendResult:
        log.error("relay process failed; restarting it on the next send", extra={"reason": reason})
        self._stop(kill=True)
        return SendResult(ok=False, code=None, message=f"{self.where}: the relay process {reason}",
                          error_kind=SendErrorKind.CONNECTION)

    def _write(self, conn: Connection, request: tuple[Any, ...]) -> bool:
        try:
            conn.send(request)
            return True
        except OSError:
            return False

    def _live_connection(self) -> Connection | None:
        if self._conn is not None and self._process is not None and self._process.poll() is None:
            return self._conn
        return None

    def _connection(self) -> Connection:
        if self._conn is not None and self._process is not None \
                and self._process.returncode is None:
            # Not asked of the OS for each message (a waitpid): a child that died shows as a
            # failed write here, or as the end of its socket when its answers are read.
            return self._conn
        live = self._live_connection()
        if live is not None:
            return live
        self._stop(kill=True)
        # A fresh interpreter rather than a fork of this threaded one; it learns its settings
        # over the socket, so no password is on a command line.
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "nurture.smtp.relay_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            conn = Connection(ours.detach())
        self._process, self._conn = process, conn
        conn.send((self._endpoint, self._timeout, self._local_hostname, self._log_level,
                   current_format()))
        if not conn.poll(START_TIMEOUT) or conn.recv() != "ready":
            raise TimeoutError("the relay process did not start")
        log.info("relay process started", extra={"pid": process.pid, "relay": self.where})
        return conn

    def _stop(self, *, kill: bool) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        self._answers.clear()
        if conn is not None:
            if not kill:
                try:
                    conn.send((_CLOSE,))
                    conn.poll(self._timeout + 1)
                except OSError:
                    pass
            conn.close()
        if process is not None:
            try:
                process.wait(timeout=0.1 if kill else self._timeout + 2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def close(self) -> None:
        """QUIT politely in the child and let it exit."""
        with self._lock:
            self._tickets.clear()
            self._stop(kill=False)

    def __enter__(self) -> ProcessTransport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class _Child:
    """The child's side of the socket: it answers the parent's requests in order, handing back
    answers in batches and making the next message ready while the relay digests a body."""

    def __init__(self, conn: Connection, transport: SmtpTransport) -> None:
        self._conn = conn
        self._transport = transport
        self._unreachable = False
        self._answers: list[tuple[SendResult, float] | None] = []
        # The next request, when it was read while the relay digested a body, and its message
        # made ready for the wire.
        self._ahead: tuple[Any, ...] | None = None
        self._prepared_ahead: PreparedMessage | None = None

    def serve(self) -> None:
        """Until told to close; raises EOFError or OSError when the parent goes away."""
        while True:
            request = self._next_request()
            if request[0] == _CLOSE:
                self._conn.send("closed")
                return
            if request[0] == _RESET:
                self._unreachable = False
            else:
                self._send(request)

    def _next_request(self) -> tuple[Any, ...]:
        if self._ahead is None:
            self._hand_back()  # before waiting for the parent
            request: tuple[Any, ...] = self._conn.recv()
            return request
        request, self._ahead = self._ahead, None
        return request

    def _send(self, request: tuple[Any, ...]) -> None:
        _, message, skip_after_failure = request
        if skip_after_failure and self._unreachable:
            self._prepared_ahead = None
            self._answers.append(None)
            return
        try:
            prepared, self._prepared_ahead = self._prepared_ahead or prepare(message), None
        except Exception as error:  # a bug in assembling it: this message fails, not the child
            log.exception("could not assemble a message")
            self._answers.append((SendResult(
                ok=False, message=f"could not assemble the message ({type(error).__name__})",
                error_kind=SendErrorKind.TEMPORARY), time.monotonic()))
            return
        result = self._transport.start(prepared)
        if result is None:
            # The relay is reading the body and deciding: meanwhile hand back the answers
            # the parent may be waiting for, make the next message ready, and put its
            # envelope behind this body, so that one round trip answers both.
            self._hand_back()
            self._read_ahead()
            if self._prepared_ahead is not None:
                self._transport.send_ahead(self._prepared_ahead)
            result = self._transport.complete()
        self._answers.append((result, time.monotonic()))
        if skip_after_failure:
            self._unreachable = result.error_kind is SendErrorKind.CONNECTION

    def _read_ahead(self) -> None:
        if self._conn.poll(0):
            self._ahead = self._conn.recv()
            if self._ahead[0] == _SEND:
                # Assembled while the relay digests the body before; a failure is the
                # message's own, and `_send` meets it again.
                with contextlib.suppress(Exception):
                    self._prepared_ahead = prepare(self._ahead[1])

    def _hand_back(self) -> None:
        """Write the answers back once enough wait, or at once when the parent has sent nothing
        more: it may be waiting for them."""
        if self._answers and (len(self._answers) >= REPLY_BATCH or not self._conn.poll(0)):
            self._conn.send(self._answers)
            self._answers = []


def _serve(conn: Connection) -> None:
    """The child: answer requests in order until told to close or until the parent goes away."""
    # Ctrl-C reaches the whole process group, and a container's stop signal may too; the parent
    # decides when sending ends (after the messages in flight) and then closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    endpoint, timeout, local_hostname, log_level, log_format = conn.recv()
    # The parent's format, not a guess of our own: the parent may have been told json on a terminal.
    configure_logging(log_level, log_format)
    transport = SmtpTransport(endpoint, timeout=timeout, local_hostname=local_hostname)
    conn.send("ready")
    try:
        _Child(conn, transport).serve()
    except (EOFError, OSError):
        return  # the parent is gone
    finally:
        transport.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
