"""The mail catcher on loopback: messages sent with smtplib land as .eml files and in the web inbox."""

from __future__ import annotations

import html
import os
import signal
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from nurture.smtp.mailcatcher import CONTENT_SECURITY_POLICY, MailCatcher

SCRIPT = "<script>alert('pwned')</script>"


def email(subject: str, *, html_part: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Nurture <hello@nurture.test>"
    message["To"] = "Ada <ada@example.test>"
    message["Subject"] = subject
    message["Message-ID"] = "<m1@nurture.test>"
    message["List-Unsubscribe"] = "<https://nurture.test/u/abc>"
    message.set_content(f"Plain text of {subject} & <friends>\n")
    if html_part is not None:
        message.add_alternative(html_part, subtype="html")
    return message


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    with MailCatcher(tmp_path / "outbox", smtp_port=0, http_port=0) as catcher:
        yield catcher


def send(catcher: MailCatcher, *messages: EmailMessage) -> list[bytes]:
    """Send each message and return the bytes that went over the wire."""
    sent = []
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client:
        for message in messages:
            data = message.as_bytes(policy=policy.SMTP)
            client.sendmail("hello@nurture.test", ["ada@example.test"], data)
            sent.append(data)
    return sent


def fetch(catcher: MailCatcher, path: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(f"{catcher.inbox_url.rstrip('/')}{path}", timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_ports_zero_are_replaced_by_the_real_ones(catcher: MailCatcher) -> None:
    assert catcher.smtp_port > 0
    assert catcher.http_port > 0
    assert catcher.smtp_port != catcher.http_port


def test_messages_are_stored_unchanged_and_listed_newest_first(catcher: MailCatcher) -> None:
    first, second = email("First subject"), email("Second <subject>")

    first_data, second_data = send(catcher, first, second)

    stored = catcher.messages()
    assert [p.suffix for p in stored] == [".eml", ".eml"]
    assert [p.read_bytes() for p in stored] == [second_data, first_data]
    assert not [p for p in catcher.outbox_dir.iterdir() if p not in stored]  # no temp files left

    status, headers, page = fetch(catcher, "/")
    assert status == 200
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.index("Second &lt;subject&gt;") < page.index("First subject")
    assert f'href="/m/{stored[0].name}"' in page


def test_message_page_shows_headers_text_and_a_sandboxed_frame(catcher: MailCatcher) -> None:
    send(catcher, email("Hello", html_part='<p class="x">Hi & welcome</p>'))
    name = catcher.messages()[0].name

    status, headers, page = fetch(catcher, f"/m/{name}")

    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Content-Security-Policy" in headers
    assert "<pre>Plain text of Hello &amp; &lt;friends&gt;\n</pre>" in page
    assert "&lt;https://nurture.test/u/abc&gt;" in page  # List-Unsubscribe
    assert "Ada &lt;ada@example.test&gt;" in page
    assert "<iframe sandbox=" in page
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    # links open in a new tab: other sites may not load inside the frame
    assert 'srcdoc="&lt;base target=_blank&gt;&lt;p class=&quot;x&quot;&gt;Hi &amp; welcome' in page
    assert f'href="/raw/{name}"' in page


def test_a_script_in_an_email_only_appears_escaped_in_srcdoc(catcher: MailCatcher) -> None:
    send(catcher, email("Sneaky", html_part=f'<p>hi</p>{SCRIPT}"><img src=x onerror=alert(1)>'))

    _, _, page = fetch(catcher, f"/m/{catcher.messages()[0].name}")

    assert "<script" not in page
    assert "<img" not in page
    assert html.escape(SCRIPT, quote=True) in page
    srcdoc = page.split('srcdoc="', 1)[1].split('"', 1)[0]
    assert html.unescape(srcdoc).startswith("<base target=_blank><p>hi</p>" + SCRIPT)


def test_raw_message_is_served_as_plain_text(catcher: MailCatcher) -> None:
    [data] = send(catcher, email("Raw", html_part="<b>bold</b>"))

    status, headers, body = fetch(catcher, f"/raw/{catcher.messages()[0].name}")

    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body.encode() == data


@pytest.mark.parametrize(
    "path",
    [
        "/m/../../etc/passwd",
        "/m/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/raw/../../etc/passwd",
        "/m/20990101T000000000000Z-000001.eml",  # well-formed but absent
        "/m/",
        "/nowhere",
    ],
)
def test_unknown_or_traversing_names_are_not_found(catcher: MailCatcher, path: str) -> None:
    send(catcher, email("Present"))

    status, _, page = fetch(catcher, path)

    assert status == 404
    assert "root:" not in page


def test_empty_outbox_page(catcher: MailCatcher) -> None:
    status, _, page = fetch(catcher, "/")
    assert status == 200
    assert "No messages yet." in page


def test_run_mailcatcher_stops_on_sigterm(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from nurture.smtp.mailcatcher import run_mailcatcher\n"
        "run_mailcatcher(sys.argv[1], 0, 0, on_ready=lambda c: print(c.smtp_port, c.http_port,"
        " flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path / "outbox")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        smtp_port, http_port = map(int, process.stdout.readline().split())
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as client:
            client.send_message(email("Through the CLI runner"))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=5) as reply:
            assert "Through the CLI runner" in reply.read().decode()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "stopped\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_preview_keeps_the_emails_doctype_first(catcher: MailCatcher) -> None:
    send(catcher, email("Doctype", html_part="<!DOCTYPE html>\n<html><body>Hi</body></html>"))

    _, _, page = fetch(catcher, f"/m/{catcher.messages()[0].name}")

    assert 'srcdoc="&lt;!DOCTYPE html&gt;&lt;base target=_blank&gt;\n&lt;html&gt;' in page
