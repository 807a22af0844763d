"""The local catch-all mail server of the embedded default: keeps every message it receives as an
.eml file in the outbox folder and shows them in a small web inbox on 127.0.0.1."""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LISTED_AT_MOST = 500
LEADING_DOCTYPE = re.compile(r"\A\s*(<!doctype[^>]*>)?", re.IGNORECASE)
NAME_PATTERN = re.compile(r"\d{8}T\d{6}\d{6}Z-\d{6}\.eml")
SHOWN_HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
# Scripts are blocked twice: by this policy (which srcdoc frames inherit) and by the frame's sandbox.
# Images may load so that a preview looks like the real thing. The policy keeps other sites out of
# the frame, so links in a preview open in a new tab (the sandbox allows that popup, nothing else).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem;
       color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.3rem; } a { color: #0a58ca; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e3e3e3;
         vertical-align: top; overflow-wrap: anywhere; }
th { font-weight: 600; white-space: nowrap; }
iframe { width: 100%; height: 70vh; border: 1px solid #ccc; background: #fff; }
pre { white-space: pre-wrap; background: #fff; border: 1px solid #e3e3e3; padding: .8rem; }
.muted { color: #6e6e73; }
"""


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


def _read(path: Path, *, headers_only: bool = False) -> EmailMessage:
    with path.open("rb") as file:
        return BytesParser(policy=policy.default).parse(file, headersonly=headers_only)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message[name]
    except Exception:  # a header too malformed to parse must not take the page down: show it raw
        raw = [v for k, v in message.raw_items() if k.lower() == name.lower()]
        return str(raw[0]) if raw else ""
    return "" if value is None else str(value)


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return cast(str, cast(EmailMessage, part).get_content())
    except (LookupError, ValueError) as error:  # unknown charset, bad encoding
        return f"(cannot decode the {subtype} part: {error})"


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def _list_page(outbox: _Outbox) -> bytes:
    names = outbox.names()
    rows = []
    for name in names[:LISTED_AT_MOST]:
        try:
            message = _read(outbox.folder / name, headers_only=True)
        except FileNotFoundError:
            continue  # deleted since the listing
        link = f"/m/{name}"
        subject = _header(message, "Subject") or "(no subject)"
        rows.append(
            f"<tr><td class=muted>{html.escape(_header(message, 'Date'))}</td>"
            f"<td>{html.escape(_header(message, 'To'))}</td>"
            f'<td><a href="{html.escape(link)}">{html.escape(subject)}</a></td></tr>'
        )
    count = (
        f"{len(names)} message(s)"
        if len(names) <= LISTED_AT_MOST
        else f"newest {LISTED_AT_MOST} of {len(names)} messages"
    )
    table = (
        "<table><thead><tr><th>Date</th><th>To</th><th>Subject</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No messages yet.</p>"
    )
    return _page(
        "Outbox",
        f"<h1>Outbox</h1><p class=muted>{count} in {html.escape(str(outbox.folder))}</p>{table}",
    )


def _message_page(name: str, message: EmailMessage) -> bytes:
    header_rows = "".join(
        f"<tr><th>{html.escape(header)}</th><td>{html.escape(_header(message, header))}</td></tr>"
        for header in SHOWN_HEADERS
        if header in message
    )
    parts = [
        f'<p><a href="/">&larr; Outbox</a> · <a href="/raw/{html.escape(name)}">raw message</a></p>',
        f"<h1>{html.escape(_header(message, 'Subject') or '(no subject)')}</h1>",
        f"<table>{header_rows}</table>",
    ]
    html_body = _body(message, "html")
    if html_body is not None:
        # srcdoc is an attribute: html.escape(quote=True) keeps the email's markup from closing it,
        # and the sandbox (no allow-scripts, no allow-same-origin) keeps its scripts inert.
        # After any doctype, so that the email's own rendering mode is kept.
        preview = LEADING_DOCTYPE.sub(lambda m: f"{m[0]}<base target=_blank>", html_body, count=1)
        parts.append(
            f'<h2>HTML</h2><iframe sandbox="{FRAME_SANDBOX}" title="HTML part" '
            f'srcdoc="{html.escape(preview, quote=True)}"></iframe>'
        )
    text_body = _body(message, "plain")
    if text_body is not None:
        parts.append(f"<h2>Text</h2><pre>{html.escape(text_body)}</pre>")
    if html_body is None and text_body is None:
        parts.append("<p class=muted>No text or HTML part.</p>")
    return _page(_header(message, "Subject") or name, "".join(parts))


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
                self._send(HTTPStatus.OK, html_type, _list_page(outbox), with_body)
                return
            if path.startswith("/m/") and (file := outbox.path(path.removeprefix("/m/"))):
                page = _message_page(file.name, _read(file))
                self._send(HTTPStatus.OK, html_type, page, with_body)
                return
            if path.startswith("/raw/") and (file := outbox.path(path.removeprefix("/raw/"))):
                # text/plain + nosniff: readable in the browser, never rendered as HTML.
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", file.read_bytes(), with_body)
                return
        except FileNotFoundError:
            pass  # deleted between the check and the read
        not_found = _page("Not found", '<h1>Not found</h1><p><a href="/">Outbox</a></p>')
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
