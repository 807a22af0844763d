"""The local catch-all mail server of the embedded default: keeps every message it receives as an
.eml file in the outbox folder and shows them in a small web inbox on 127.0.0.1 (its pages are
in mailcatcher_pages)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from nurture.smtp.mailcatcher_pages import (
    CONTENT_SECURITY_POLICY,
    list_page,
    message_page,
    page,
    read_message,
)

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
NAME_PATTERN = re.compile(r"\d{8}T\d{6}\d{6}Z-\d{6}\.eml")
__all__ = ["CONTENT_SECURITY_POLICY", "MailCatcher", "MailCatcherError", "run_mailcatcher"]
class MailCatcherError(Exception):
    """The mail catcher cannot start, typically because a port is taken."""


class _CatchAll:
    """aiosmtpd handler: accepts any recipient (aiosmtpd's default) and files each message."""

    def __init__(self, outbox: _Outbox) -> None:
        self._outbox = outbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            path = self._outbox.store(cast(bytes, envelope.original_content))
        except OSError as error:
            logger.error("mail catcher: cannot write to %s: %s", self._outbox.folder, error)
            return "451 4.3.0 Cannot store the message, try again later"
        logger.info("mail catcher: stored %s", path.name)
        return f"250 2.0.0 Ok: stored as {path.name}"


class _Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._counter = 0
        self._lock = threading.Lock()

    def store(self, data: bytes) -> Path:
        with self._lock:
            self._counter += 1
            counter = self._counter
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{counter:06d}.eml"
        # A reader (the inbox, a test) must never see half a message: write aside, then rename.
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def names(self) -> list[str]:
        """Message file names, newest first (names start with their UTC time)."""
        try:
            names = [entry.name for entry in os.scandir(self.folder) if entry.is_file()]
        except FileNotFoundError:
            return []
        return sorted((n for n in names if NAME_PATTERN.fullmatch(n)), reverse=True)

    def path(self, name: str) -> Path | None:
        """The file for a name from a URL, or None unless it is one of ours: no traversal."""
        if not NAME_PATTERN.fullmatch(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None


class _Controller(Controller):
    """Binds port 0 when asked and learns the real port before aiosmtpd's self-test connects."""

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class _InboxServer(ThreadingHTTPServer):
    daemon_threads = True
    outbox: _Outbox


class _InboxHandler(BaseHTTPRequestHandler):
    server: _InboxServer
    server_version = "nurture-mailcatcher"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, *, with_body: bool) -> None:
        outbox = self.server.outbox
        path = urlsplit(self.path).path
        html_type = "text/html; charset=utf-8"
        try:
            if path == "/":
                self._send(HTTPStatus.OK, html_type, list_page(outbox.folder, outbox.names()),
                           with_body)
                return
            if path.startswith("/m/") and (file := outbox.path(path.removeprefix("/m/"))):
                shown = message_page(file.name, read_message(file))
                self._send(HTTPStatus.OK, html_type, shown, with_body)
                return
            if path.startswith("/raw/") and (file := outbox.path(path.removeprefix("/raw/"))):
                # text/plain + nosniff: readable in the browser, never rendered as HTML.
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", file.read_bytes(), with_body)
                return
        except FileNotFoundError:
            pass  # deleted between the check and the read
        not_found = page("Not found", '<h1>Not found</h1><p><a href="/">Outbox</a></p>')
        self._send(HTTPStatus.NOT_FOUND, html_type, not_found, with_body)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("mail catcher inbox: " + format, *args)


class MailCatcher:
    """SMTP on 127.0.0.1:smtp_port accepting every message into `outbox_dir`, and the web inbox on
    127.0.0.1:http_port. Port 0 picks a free port; the properties then tell the real one."""

    def __init__(self, outbox_dir: Path, *, smtp_port: int = 1025, http_port: int = 8025) -> None:
        self.outbox_dir = Path(outbox_dir)
        self._outbox = _Outbox(self.outbox_dir)
        self._smtp_port = smtp_port
        self._http_port = http_port
        self._controller: _Controller | None = None
        self._http: _InboxServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def smtp_port(self) -> int:
        return self._controller.port if self._controller is not None else self._smtp_port

    @property
    def http_port(self) -> int:
        return self._http.server_address[1] if self._http is not None else self._http_port

    @property
    def smtp_url(self) -> str:
        return f"smtp://{HOST}:{self.smtp_port}"

    @property
    def inbox_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/"

    def messages(self) -> list[Path]:
        """Stored messages, newest first."""
        return [self.outbox_dir / name for name in self._outbox.names()]

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("the mail catcher is already running")
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        controller = _Controller(
            _CatchAll(self._outbox),
            hostname=HOST,
            port=self._smtp_port,
            server_hostname="mailcatcher.localhost",
        )
        try:
            controller.start()
        except OSError as error:
            raise MailCatcherError(
                f"cannot listen for SMTP on {HOST}:{self._smtp_port}: {error.strerror or error}"
            ) from error
        try:
            http = _InboxServer((HOST, self._http_port), _InboxHandler)
        except OSError as error:
            controller.stop()
            raise MailCatcherError(
                f"cannot serve the inbox on {HOST}:{self._http_port}: {error.strerror or error}"
            ) from error
        http.outbox = self._outbox
        # A short poll interval makes stop() quick: shutdown() waits for the next poll.
        self._http_thread = threading.Thread(
            target=http.serve_forever, args=(0.1,), name="mailcatcher-inbox", daemon=True
        )
        self._http_thread.start()
        self._controller, self._http = controller, http
        logger.info("mail catcher: SMTP on %s, inbox at %s", self.smtp_url, self.inbox_url)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_mailcatcher(
    outbox_dir: Path,
    smtp_port: int,
    http_port: int,
    *,
    on_ready: Callable[[MailCatcher], None] | None = None,
) -> None:
    """Run the mail catcher until SIGINT or SIGTERM (from the main thread). `on_ready` is called
    once both servers listen, e.g. to print the addresses."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with MailCatcher(outbox_dir, smtp_port=smtp_port, http_port=http_port) as catcher:
            if on_ready is not None:
                on_ready(catcher)
            stopping.wait()
            logger.info("mail catcher: stopping")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
