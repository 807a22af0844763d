"""`nurture run --demo`: a sample person signs up through the running web app and confirms, as a
visitor would, so that a newcomer sees the double opt-in and the welcome email in the inbox page."""

from __future__ import annotations

import email
import email.policy
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from nurture.config import Settings

DEMO_FIRST_NAME = "Asha"
DEMO_TIME_ZONE = "Asia/Kolkata"
DEMO_HESITATIONS = ("stigma", "not_that_bad")
# Generous: the services are starting, and the confirmation waits for the scheduler's next tick.
WAIT_SECONDS = 60.0
_CONFIRM_PATH = re.compile(r"/confirm/[A-Za-z0-9._~-]+")
_CSRF_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]+)">')


class DemoFailed(Exception):
    """The demo could not finish; the message says which step and what to look at."""


@dataclass(frozen=True)
class DemoPerson:
    address: str
    welcome_subject: str


def demo_address(now_seconds: float) -> str:
    """A new address each run: an address already on the list is not sent a second confirmation."""
    return f"demo+{int(now_seconds)}@example.org"


def run_demo(settings: Settings) -> DemoPerson:
    """Sign up through the JSON API, confirm through the page's button, wait for the welcome."""
    base = f"http://{settings.web_host}:{settings.web_port}"
    address = demo_address(time.time())
    _wait_until_ready(base)
    _post_json(f"{base}/api/v1/subscribers", {
        "email": address, "first_name": DEMO_FIRST_NAME, "hesitations": list(DEMO_HESITATIONS),
        "time_zone": DEMO_TIME_ZONE, "locale": "en", "consent": True, "unsafe": False})
    confirmation = _wait_for_email(settings.outbox_dir, address, count=1)
    match = _CONFIRM_PATH.search(_text_of(confirmation))
    if match is None:
        raise DemoFailed("the confirmation email has no /confirm/ link; run "
                         "`nurture preview` to look at the confirmation template")
    _press_confirm(f"{base}{match.group(0)}")
    welcome = _wait_for_email(settings.outbox_dir, address, count=2)
    return DemoPerson(address=address, welcome_subject=str(welcome["Subject"]))


def _wait_until_ready(base: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoFailed(f"the web app at {base} did not answer /readyz within "
                             f"{WAIT_SECONDS:g} s; look at its log lines above")
        time.sleep(0.3)


def _post_json(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as error:
        raise DemoFailed(f"the signup API answered {error.code}; look at the web app's log "
                         "lines above") from None


def _press_confirm(url: str) -> None:
    """GET the confirmation page for its CSRF cookie and field, then POST its button."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(url, timeout=10) as response:
        page = response.read().decode()
    field = _CSRF_INPUT.search(page)
    if field is None:
        raise DemoFailed("the confirmation page has no form field to press; open it in a "
                         f"browser: {url}")
    form = urllib.parse.urlencode({field.group(1): field.group(2)}).encode()
    with opener.open(urllib.request.Request(url, data=form, method="POST"), timeout=10):
        return


def _wait_for_email(outbox: Path, address: str, *, count: int) -> EmailMessage:
    """The newest of the first `count` emails caught for `address`, once that many have arrived."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = emails_to(outbox, address)
        if len(found) >= count:
            return found[count - 1]
        if time.monotonic() > deadline:
            raise DemoFailed(f"email {count} for the demo person did not arrive within "
                             f"{WAIT_SECONDS:g} s; is the scheduler running? (`nurture status`)")
        time.sleep(0.3)


def emails_to(outbox: Path, address: str) -> list[EmailMessage]:
    """The messages the mail catcher saved for one address, oldest first."""
    if not outbox.is_dir():
        return []
    messages = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name)):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if isinstance(message, EmailMessage) and address in str(message["To"] or ""):
            messages.append(message)
    return messages


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if isinstance(part, EmailMessage) else ""
