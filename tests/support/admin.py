"""The admin pages harness: a marketer with a cheap password hash, the app with admin users on,
signing in, and three people who received their first emails."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine

from nurture.content.library import ContentHolder
from nurture.services.runtime import Runtime
from nurture.store.sql.store import SqlStore
from nurture.web.admin.auth import SESSION_COOKIE
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.clock import T0, Clock
from tests.support.smtp import RecordingSmtpServer
from tests.support.web import Browser, Web, web_settings

ENV_ADMIN_USERS = "NURTURE_ADMIN_USERS"

ADMIN = "marketer"
PASSWORD = "correct horse battery staple"
STIGMA_SECTION = "Therapy is for couples in serious trouble"
BLAME_SECTION = "Worried about being blamed"
PEOPLE = {
    "asha.k@example.org": ["stigma"],
    "bilal.r@example.org": ["stigma", "fear_of_blame"],
    "chen.w@example.org": ["vulnerability"],
}


# argon2's defaults take about a second per check on a small machine; tests use cheap parameters.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="module")
def admin_hash() -> str:
    return FAST_HASHER.hash(PASSWORD)


@dataclass
class AdminWeb(Web):
    runtime: Runtime | None = None

    def signed_in(self) -> Browser:
        browser = self.browser()
        response = sign_in(browser)
        assert response.status_code == 303, response.text
        return browser


def build_admin_web(database_url: str, engine: Engine, tmp_path: Path, smtp_url: str | None,
                    *, templates_dir: Path | None = None, **settings_updates: Any) -> AdminWeb:
    """The app on the test's database; `smtp_url` None keeps the test settings' relay."""
    settings = web_settings(database_url, tmp_path)
    settings = settings.model_copy(update={
        "smtp_url": smtp_url or settings.smtp_url,
        "templates_dir": templates_dir or settings.templates_dir, **settings_updates})
    content = ContentHolder(settings.sequences_dir, settings.templates_dir)
    clock = Clock()
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
    app = create_app(settings, runtime=runtime, options=WebOptions(), clock=clock)
    return AdminWeb(app=app, engine=engine, clock=clock, settings=settings, content=content,
                    runtime=runtime)


@pytest.fixture
def admin(database_url: str, engine: Engine, tmp_path: Path, smtp_server: RecordingSmtpServer,
          admin_hash: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminWeb]:
    monkeypatch.setenv(ENV_ADMIN_USERS, f"{ADMIN}:{admin_hash}")
    harness = build_admin_web(database_url, engine, tmp_path, smtp_server.url)
    yield harness
    harness.close()


def sign_in(browser: Browser, name: str = ADMIN, password: str = PASSWORD,
            target: str = "/admin") -> httpx.Response:
    token = browser.csrf("/admin/login")
    return browser.post("/admin/login", data={"csrf_token": token, "name": name,
                                              "password": password, "next": target})


def session_cookie(response: httpx.Response) -> SimpleCookie | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{SESSION_COOKIE}="):
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            return cookie
    return None


def deliver_to_people(admin: AdminWeb, smtp_server: RecordingSmtpServer) -> None:
    """Three people sign up and confirm; the welcome goes to all, then `understanding` to the two
    with stigma (it is skipped for the third), and nothing else is due yet."""
    assert admin.runtime is not None
    dispatcher = admin.runtime.dispatcher(owner="test")
    for email, reasons in PEOPLE.items():
        assert admin.signup(email=email, hesitations=reasons).status_code == 200
    assert dispatcher.run(T0).sent == 3, "the confirmation emails"
    for email in PEOPLE:
        assert admin.confirm(email).status_code == 200
    assert dispatcher.run(T0).sent == 3, "the welcomes"
    assert dispatcher.run(T0 + timedelta(days=2, hours=1)).sent == 2
    smtp_server.clear()


