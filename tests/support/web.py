"""The web app harness: the app on a test database with a movable clock, browsers with cookie jars
through ASGI, the real uvicorn server for real HTTP, and reads of the rows a test checks."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from nurture.config import Settings
from nurture.content.library import ContentHolder
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.policy import DispatchPolicy
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.types import Brand
from nurture.services.runtime import Runtime
from nurture.setting_values import parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from nurture.store.database import make_engine, upgrade
from nurture.store.models import Base, ConsentEvent, Delivery, Enrollment, Subscriber
from nurture.store.sql.store import SqlStore
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.clock import Clock
from tests.support.paths import ROOT

SECRET = "web-test-secret-key-0123456789abcdef"
EMAIL = "asha.k@example.org"
NAME = "Ashwini"
CSRF_PATTERN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')

GOOD_FORM: dict[str, Any] = {
    "email": EMAIL,
    "first_name": NAME,
    "hesitations": ["stigma", "not_sure"],
    "time_zone": "Europe/London",
    "locale": "en",
    "consent": "yes",
    "safety": "no",
}


def sequences_dir(tmp_path: Path) -> Path:
    """The real sample and system sequences, without sequences still being written by others, and
    a selection that sends everyone to sample (the real selection file has its own test)."""
    directory = tmp_path / "sequences"
    directory.mkdir(exist_ok=True)
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, directory / name)
    (directory / "selection.yaml").write_text("default: sample\n", encoding="utf-8")
    return directory


def web_settings(database_url: str, tmp_path: Path, templates_dir: Path | None = None) -> Settings:
    return Settings(database_url=database_url, secret_key=SECRET, base_url="http://testserver",
                    sequences_dir=sequences_dir(tmp_path),
                    templates_dir=templates_dir or ROOT / "templates",
                    sender="Nurture <hello@nurture.test>")


class Browser:
    """An httpx client on the app through ASGITransport, seen as coming from `ip`, with its own
    cookie jar; synchronous for the tests' convenience."""

    def __init__(self, app: FastAPI, ip: str = "127.0.0.1") -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50123)),
                                         base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies

    def csrf(self, url: str) -> str:
        response = self.get(url)
        assert response.status_code == 200, response.text
        return csrf_of(response)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def csrf_of(response: httpx.Response) -> str:
    match = CSRF_PATTERN.search(response.text)
    assert match, "the page has no CSRF field"
    return match.group(1)


@dataclass
class Web:
    app: FastAPI
    engine: Engine
    clock: Clock
    settings: Settings
    content: ContentHolder
    signer: TokenSigner = field(default_factory=lambda: TokenSigner(SECRET))
    browsers: list[Browser] = field(default_factory=list)

    def browser(self, ip: str = "127.0.0.1") -> Browser:
        browser = Browser(self.app, ip)
        self.browsers.append(browser)
        return browser

    def signup(self, browser: Browser | None = None, **changes: Any) -> httpx.Response:
        browser = browser or self.browser()
        form = {**GOOD_FORM, **changes, "csrf_token": browser.csrf("/")}
        return browser.post("/", data={k: v for k, v in form.items() if v is not None})

    def subscriber_id(self, email: str = EMAIL) -> UUID:
        with self.engine.connect() as conn:
            found: UUID = conn.execute(
                select(Subscriber.id).where(Subscriber.email == email)).scalar_one()
        return found

    def token(self, purpose: str, email: str = EMAIL) -> str:
        return self.signer.sign(purpose, self.subscriber_id(email))

    def confirm(self, email: str = EMAIL, browser: Browser | None = None) -> httpx.Response:
        browser = browser or self.browser()
        url = f"/confirm/{self.token('confirm', email)}"
        return browser.post(url, data={"csrf_token": browser.csrf(url)})

    def preferences(self, action: str, email: str = EMAIL, **fields: Any) -> httpx.Response:
        browser = self.browser()
        url = f"/p/{self.token('preferences', email)}"
        return browser.post(url, data={"csrf_token": browser.csrf(url), "action": action, **fields})

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()


def build_web(database_url: str, engine: Engine, tmp_path: Path,
              options: WebOptions | None = None, templates_dir: Path | None = None) -> Web:
    settings = web_settings(database_url, tmp_path, templates_dir)
    content = ContentHolder(settings.sequences_dir, settings.templates_dir)
    clock = Clock()
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
    app = create_app(settings, runtime=runtime, options=options or WebOptions(), clock=clock)
    return Web(app=app, engine=engine, clock=clock, settings=settings, content=content)


@contextmanager
def served_web(tmp_path: Path, database_name: str, options: WebOptions | None = None,
               templates_dir: Path | None = None) -> Iterator[tuple[Web, str]]:
    """A migrated SQLite file in `tmp_path`, the web harness on it, served by a real uvicorn
    server: the harness and its base URL, for browser tests."""
    url = f"sqlite:///{tmp_path / database_name}"
    upgrade(url)
    engine = make_engine(url)
    web = build_web(url, engine, tmp_path, options=options, templates_dir=templates_dir)
    try:
        with serve(web.app) as base_url:
            yield web, base_url
    finally:
        web.close()
        engine.dispose()


@pytest.fixture
def web(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Web]:
    harness = build_web(database_url, engine, tmp_path)
    yield harness
    harness.close()


def web_dispatcher(web: Web, smtp_url: str) -> Dispatcher:
    """The dispatcher that sends what `web` queued, to a real SMTP server, with links back to it."""
    return Dispatcher(
        store=SqlStore(web.engine),
        transport=SmtpTransport(parse_smtp_url(smtp_url), timeout=5),
        content=web.content,
        brand=Brand(sender="Nurture <hello@nurture.test>", discreet_sender_name="Notes for you",
                    postal_address="1 Test Street", base_url="http://testserver"),
        links=LinkMaker(base_url="http://testserver", signer=TokenSigner(SECRET)),
        owner="test", message_id_domain="nurture.test", policy=DispatchPolicy(),
    )


def rows(engine: Engine, model: type[Base]) -> list[Any]:
    """All rows of a table, oldest first (tests move the clock where the order matters)."""
    table = model.__table__
    when = next(name for name in ("at", "created_at", "enrolled_at") if name in table.c)
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c[when])).all())


def count_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(
                select(func.count()).select_from(model.__table__)).scalar_one()
            for model in (Subscriber, ConsentEvent, Delivery, Enrollment)
        }


def subscriber_row(engine: Engine, email: str = EMAIL) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Subscriber.__table__).where(Subscriber.email == email)).one()


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           proxy_headers=False, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


