"""The SMTP transport: sends OutgoingMessages over one persistent smtplib connection and classifies
every outcome as ok, temporary, permanent or connection failure."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from nurture.engine.ports import OutgoingMessage, SendErrorKind, SendResult
from nurture.setting_values import SmtpEndpoint, SmtpSecurity
from nurture.smtp import session as smtp_session
from nurture.smtp.session import PreparedMessage

logger = logging.getLogger(__name__)

MAX_REPLY_CHARS = 300

# Servers close idle connections (RFC 5321 suggests after 5 minutes, some much sooner). Sending on
# such a connection fails before anything is decided, yet would defer the delivery; a NOOP first,
# only after a pause, costs one round trip per batch instead.
DEFAULT_PROBE_IDLE_AFTER = 10.0


class _ReplyMemory(smtplib.SMTP):
    """smtplib.SMTP that remembers the last reply, so a success can report the server's queue id."""

    last_reply: tuple[int, bytes] = (0, b"")

    def getreply(self) -> tuple[int, bytes]:
        reply = super().getreply()
        self.last_reply = reply
        return reply


class _TlsReplyMemory(_ReplyMemory, smtplib.SMTP_SSL):
    pass


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())[:MAX_REPLY_CHARS]


class SmtpTransport:
    """A `ports.Transport` over SMTP. One connection, opened on first use and reused; not meant to
    be shared by threads (a lock keeps concurrent calls from interleaving on the wire)."""

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        timeout: float,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        probe_idle_after: float = DEFAULT_PROBE_IDLE_AFTER,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: a blocking socket could hang forever")
        self._endpoint = endpoint
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._ssl_context = ssl_context
        self._probe_idle_after = probe_idle_after
        self._smtp: _ReplyMemory | None = None
        self._in_progress: tuple[_ReplyMemory, dict[str, tuple[int, bytes]]] | None = None
        self._ahead: PreparedMessage | None = None
        """The message whose envelope went out behind the body in progress (`send_ahead`)."""
        self._last_used = 0.0
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """host:port, safe to log."""
        return f"{self._endpoint.host}:{self._endpoint.port}"

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.sock is not None

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            outcome = self._start(smtp_session.prepare(message))
            return outcome if outcome is not None else self._complete()

    def start(self, prepared: PreparedMessage) -> SendResult | None:
        """The message up to the relay's verdict on it (MAIL, RCPT, DATA, the body), connecting
        first if need be: its outcome when that is already known, else None, and `complete()`
        reads the verdict. In between the caller may prepare the next message."""
        with self._lock:
            return self._start(prepared)

    def complete(self) -> SendResult:
        with self._lock:
            return self._complete()

    def send_ahead(self, prepared: PreparedMessage) -> bool:
        """Between `start` and `complete`: write the next message's envelope behind the body,
        so that the relay answers both at once (RFC 2920); the next `start` must be this
        message's. False when the relay does not pipeline, or there is no body in progress."""
        with self._lock:
            if self._in_progress is None or self._ahead is not None:
                return False
            smtp = self._in_progress[0]
            if not smtp_session.pipelines(smtp):
                return False
            try:
                smtp_session.send_envelope(smtp, prepared)
            except (smtplib.SMTPException, OSError):
                return False  # the body's verdict will say what became of the connection
            self._ahead = prepared
            return True

    def _start(self, prepared: PreparedMessage) -> SendResult | None:
        if self._in_progress is not None:
            raise RuntimeError("a message was started and not completed")
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead is not prepared or self._smtp is None):
            # An envelope is on the wire for another message: the session's state is unknown.
            self._drop()
            ahead = None
        try:
            smtp = self._smtp if ahead is not None and self._smtp is not None \
                else self._connection()
        except smtplib.SMTPResponseException as error:
            # Greeting, EHLO, STARTTLS or AUTH refused: a problem with the relay or our
            # credentials, never with this recipient, so it must not count as a bounce.
            self._drop()
            logger.error("SMTP %s refused the session: %s", self.where, error.smtp_code)
            return self._failure(SendErrorKind.CONNECTION, error.smtp_code, _reply_text(error.smtp_error))
        except (smtplib.SMTPException, OSError) as error:
            self._drop()
            logger.warning("SMTP %s: cannot connect (%s)", self.where, type(error).__name__)
            return self._failure(SendErrorKind.CONNECTION, None, _reply_text(f"{self.where}: {error}"))
        refused: dict[str, tuple[int, bytes]] = {}
        failure = self._guarded(lambda: refused.update(
            smtp_session.start(smtp, prepared, envelope_sent=ahead is not None)))
        if failure is not None:
            self._last_used = time.monotonic()
            return failure
        self._in_progress = (smtp, refused)
        return None

    def _complete(self) -> SendResult:
        if self._in_progress is None:
            raise RuntimeError("complete() without a message started")
        (smtp, refused), self._in_progress = self._in_progress, None
        try:
            failure = self._guarded(lambda: smtp_session.complete(
                smtp, next_envelope_sent=self._ahead is not None))
        finally:
            self._last_used = time.monotonic()
        if failure is not None:
            return failure
        code, raw = smtp.last_reply
        text = _reply_text(raw)
        if refused:
            # Some recipients accepted the message: it went out, so a retry would duplicate it.
            codes = ", ".join(str(c) for c, _ in refused.values())
            logger.warning("SMTP %s: %d recipient(s) refused (%s)", self.where, len(refused), codes)
            return SendResult(
                ok=True,
                code=code if code == 250 else 250,
                message=_reply_text(f"{len(refused)} recipient(s) refused ({codes}); {text}"),
            )
        logger.debug("SMTP %s: accepted %s", self.where, code)
        return SendResult(ok=True, code=code if code == 250 else 250, message=text)

    def _guarded(self, step: Callable[[], object]) -> SendResult | None:
        """Run one half of a message's conversation: None when it went through, else the outcome
        its refusal or failure means."""
        try:
            step()
        except smtplib.SMTPRecipientsRefused as error:
            return self._refused(list(error.recipients.values()))
        except smtplib.SMTPSenderRefused as error:
            return self._refused([(error.smtp_code, error.smtp_error)], mail_from=True)
        except smtplib.SMTPDataError as error:
            return self._refused([(error.smtp_code, error.smtp_error)])
        except smtplib.SMTPNotSupportedError as error:
            # Raised before MAIL is sent: the relay cannot carry a non-ASCII address at all.
            logger.warning("SMTP %s: %s", self.where, error)
            return self._failure(SendErrorKind.PERMANENT, None, _reply_text(str(error)))
        except smtplib.SMTPResponseException as error:
            # A malformed or unexpected reply (e.g. an over-long line): the session is in an
            # unknown state and the reply says nothing about the recipient.
            self._drop()
            logger.warning("SMTP %s: unexpected reply %s", self.where, error.smtp_code)
            return self._failure(SendErrorKind.CONNECTION, error.smtp_code, _reply_text(error.smtp_error))
        except (smtplib.SMTPException, OSError) as error:
            # SMTPServerDisconnected, timeouts, resets: the message may or may not have arrived.
            self._drop()
            logger.warning("SMTP %s: connection lost (%s)", self.where, type(error).__name__)
            return self._failure(SendErrorKind.CONNECTION, None, _reply_text(f"{self.where}: {error}"))
        except BaseException:
            self._drop()
            raise
        return None

    def _refused(self, replies: Sequence[tuple[int, bytes | str]], *, mail_from: bool = False) -> SendResult:
        # With several recipients, any temporary refusal makes the whole send worth retrying.
        temporary = [r for r in replies if not 500 <= r[0] < 600]
        code, raw = temporary[0] if temporary else replies[0]
        if mail_from and 500 <= code < 600:
            # MAIL FROM refused: our sender or relay setup is wrong, not the subscriber's address;
            # a PERMANENT here would hard-bounce (suppress) every subscriber in the batch.
            logger.error("SMTP %s refused the sender: %s", self.where, code)
            return self._failure(SendErrorKind.TEMPORARY, code, _reply_text(raw))
        return self._classified(code, raw)

    def _classified(self, code: int, raw: bytes | str) -> SendResult:
        if code == 421 or not 400 <= code < 600:
            # 421: the server is closing the channel; a code outside 4xx/5xx is a broken
            # server. Either way this connection is done and nothing was decided.
            self._drop()
        kind = SendErrorKind.PERMANENT if 500 <= code < 600 else SendErrorKind.TEMPORARY
        logger.warning("SMTP %s: %s %s", self.where, kind.value, code)
        return self._failure(kind, code, _reply_text(raw))

    @staticmethod
    def _failure(kind: SendErrorKind, code: int | None, text: str) -> SendResult:
        return SendResult(ok=False, code=code, message=text, error_kind=kind)

    def _connection(self) -> _ReplyMemory:
        smtp = self._smtp
        if smtp is not None and smtp.sock is not None:
            idle = time.monotonic() - self._last_used
            if idle < self._probe_idle_after or self._alive(smtp):
                return smtp
            logger.info("SMTP %s: idle connection was closed, reconnecting", self.where)
        self._drop()
        self._smtp = self._open()
        self._last_used = time.monotonic()
        return self._smtp

    def _open(self) -> _ReplyMemory:
        endpoint = self._endpoint
        context = self._ssl_context or ssl.create_default_context()
        smtp: _ReplyMemory
        if endpoint.security is SmtpSecurity.TLS:
            smtp = _TlsReplyMemory(
                endpoint.host,
                endpoint.port,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
                context=context,
            )
        else:
            smtp = _ReplyMemory(
                endpoint.host,
                endpoint.port,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
            )
        try:
            smtp.ehlo_or_helo_if_needed()
            if endpoint.security is SmtpSecurity.STARTTLS:
                # starttls() raises SMTPNotSupportedError when the server does not offer it: we
                # never fall back to plain text when TLS was asked for.
                smtp.starttls(context=context)
                smtp.ehlo()
            if endpoint.username:
                smtp.login(endpoint.username, endpoint.password or "")
        except BaseException:
            smtp.close()
            raise
        logger.info("SMTP %s: connected (%s)", self.where, endpoint.security.value)
        return smtp

    @staticmethod
    def _alive(smtp: _ReplyMemory) -> bool:
        try:
            return smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def noop_check(self) -> bool:
        """True when the server answers NOOP with 250, connecting first if needed; for health
        checks. A failure drops the connection so the next send starts afresh."""
        with self._lock:
            try:
                smtp = self._connection()
            except (smtplib.SMTPException, OSError) as error:
                logger.warning("SMTP %s: check failed (%s)", self.where, type(error).__name__)
                self._drop()
                return False
            if self._alive(smtp):
                self._last_used = time.monotonic()
                return True
            self._drop()
            return False

    def _drop(self) -> None:
        self._in_progress = None
        self._ahead = None
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        """QUIT politely and forget the connection; errors are ignored, the socket is closed."""
        with self._lock:
            self._in_progress = self._ahead = None
            smtp, self._smtp = self._smtp, None
            if smtp is None or smtp.sock is None:
                return
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                smtp.close()

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
