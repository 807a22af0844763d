"""Click counting end to end, on SQLite and PostgreSQL: with NURTURE_CLICK_COUNTING on, an email
sent through a real SMTP server carries its body link as a counted redirect; following it over
real HTTP answers 303 to the original address and counts per delivery; an edited token is a 404
that counts nothing; the retention purge and erasure take the counts away."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import httpx
import pytest
from sqlalchemy import Engine

from nurture.content.library import ContentHolder
from nurture.engine.click_links import ClickSigner
from nurture.engine.dispatcher import Dispatcher
from nurture.services.retention import purge_expired
from nurture.services.runtime import Runtime
from nurture.store.accounts.store import AccountStore
from nurture.store.clicks import clicks_of
from nurture.store.sql.store import SqlStore
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.clock import T0, Clock
from tests.support.paths import ROOT
from tests.support.web import Web, serve, web_dispatcher, web_settings

TARGET = "https://example.com/read?x=1&y=2"
COUNTED = re.compile(r"http://testserver/c/[A-Za-z0-9_.\-]+")
RETENTION = timedelta(days=30)


def templates_with_a_link(tmp_path: Path) -> Path:
    """The real templates, with a link of its own in the sample welcome email's body."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    welcome = templates / "emails" / "sample" / "welcome.md"
    welcome.write_text(welcome.read_text(encoding="utf-8")
                       + f"\nThere is more in [a short article]({TARGET}).\n", encoding="utf-8")
    return templates


def counting_web(database_url: str, engine: Engine, tmp_path: Path, *, counting: bool) -> Web:
    settings = web_settings(database_url, tmp_path, templates_with_a_link(tmp_path)).model_copy(
        update={"click_counting": counting})
    content = ContentHolder(settings.sequences_dir, settings.templates_dir)
    clock = Clock()
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
    app = create_app(settings, runtime=runtime, options=WebOptions(), clock=clock)
    return Web(app=app, engine=engine, clock=clock, settings=settings, content=content)


@pytest.fixture(params=[True, False], ids=["counting", "not-counting"])
def web(request: pytest.FixtureRequest, database_url: str, engine: Engine,
        tmp_path: Path) -> Iterator[Web]:
    harness = counting_web(database_url, engine, tmp_path, counting=request.param)
    yield harness
    harness.close()


@pytest.fixture
def dispatcher(web: Web, smtp_server: Any) -> Dispatcher:
    sender = web_dispatcher(web, smtp_server.url)
    sender.count_clicks = web.settings.click_counting
    return sender


def welcome(web: Web, dispatcher: Dispatcher, smtp_server: Any) -> tuple[EmailMessage, UUID]:
    """The welcome email as received, and its delivery."""
    web.signup()
    assert dispatcher.run(T0).sent == 1
    assert web.confirm().status_code == 200
    assert dispatcher.run(T0).sent == 1
    message = cast(EmailMessage, smtp_server.messages[1].message)
    delivery = UUID(hex=message["Message-ID"].strip("<>").split("@")[0])
    return message, delivery


def parts(message: EmailMessage) -> tuple[str, str]:
    html = cast(str, message.get_body(("html",)).get_content())  # type: ignore[union-attr]
    text = cast(str, message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return html, text.replace("\r\n", "\n")


def path_of(link: str) -> str:
    return link.removeprefix("http://testserver")


@pytest.mark.parametrize("web", [True], indirect=True, ids=["counting"])
def test_a_body_link_redirects_and_counts_per_delivery(web: Web, dispatcher: Dispatcher,
                                                       smtp_server: Any) -> None:
    message, delivery = welcome(web, dispatcher, smtp_server)
    html, text = parts(message)
    links = COUNTED.findall(html)
    assert len(links) == 1, "only the body's own link is counted"
    assert TARGET.replace("&", "&amp;") not in html and TARGET not in text
    body, footer = text.split("\n----------\n")
    assert COUNTED.findall(body) == links
    assert "/c/" not in footer and "https://findahelpline.com/" in footer
    crisis = html[html.index('class="crisis"'):]
    assert "/c/" not in crisis and 'href="https://findahelpline.com/"' in crisis
    assert "http://testserver/u/" in crisis and "http://testserver/p/" in crisis
    assert clicks_of(web.engine, delivery) is None

    with serve(web.app) as base, httpx.Client(base_url=base) as client:
        first = client.get(path_of(links[0]))
        assert first.status_code == 303
        assert first.headers["location"] == TARGET
        assert "set-cookie" not in first.headers
        counted = clicks_of(web.engine, delivery)
        assert counted is not None and (counted.clicks, counted.first_at) == (1, T0)
        web.clock.advance(hours=2)
        assert client.get(path_of(links[0])).headers["location"] == TARGET
        counted = clicks_of(web.engine, delivery)
        assert counted is not None
        assert (counted.clicks, counted.first_at, counted.last_at) == (2, T0, T0 + timedelta(hours=2))

        token = links[0].rsplit("/", 1)[1]
        for forged in (token[:-3] + ("abc" if not token.endswith("abc") else "xyz"),
                       token.replace(".", "x", 1), "anything"):
            refused = client.get(f"/c/{forged}")
            assert refused.status_code == 404
            assert "location" not in refused.headers
            assert refused.headers["content-type"].startswith("text/html")
        assert clicks_of(web.engine, delivery).clicks == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("web", [True], indirect=True, ids=["counting"])
def test_the_retention_purge_and_erasure_take_the_counts_away(web: Web, dispatcher: Dispatcher,
                                                              smtp_server: Any) -> None:
    message, delivery = welcome(web, dispatcher, smtp_server)
    link = path_of(COUNTED.findall(parts(message)[0])[0])
    browser = web.browser()
    assert browser.get(link).status_code == 303

    kept = purge_expired(web.engine, now=T0 + RETENTION - timedelta(minutes=1), retention=RETENTION)
    assert kept.clicks == 0 and clicks_of(web.engine, delivery) is not None
    purged = purge_expired(web.engine, now=T0 + RETENTION + timedelta(minutes=1), retention=RETENTION)
    assert purged.clicks == 1 and purged.as_dict()["clicks"] == 1
    assert clicks_of(web.engine, delivery) is None

    web.clock.advance(days=31)
    assert browser.get(link).status_code == 303, "a later click counts afresh"
    assert clicks_of(web.engine, delivery) is not None
    assert AccountStore(web.engine).erase(web.subscriber_id(), now=web.clock())
    assert clicks_of(web.engine, delivery) is None, "erasure takes the person's counts too"
    after = browser.get(link)
    assert (after.status_code, after.headers["location"]) == (303, TARGET), \
        "the link still leads on, with nothing left to count"
    assert clicks_of(web.engine, delivery) is None


@pytest.mark.parametrize("web", [False], indirect=True, ids=["not-counting"])
def test_off_the_email_links_straight_to_the_target_and_nothing_is_counted(
        web: Web, dispatcher: Dispatcher, smtp_server: Any) -> None:
    message, delivery = welcome(web, dispatcher, smtp_server)
    html, text = parts(message)
    assert "/c/" not in html and "/c/" not in text
    assert f'href="{TARGET.replace("&", "&amp;")}"' in html and TARGET in text
    # A link from an email sent while counting was on still leads on, counting nothing.
    token = ClickSigner(web.settings.secret_key).sign(delivery, TARGET)
    answer = web.browser().get(f"/c/{token}")
    assert (answer.status_code, answer.headers["location"]) == (303, TARGET)
    assert clicks_of(web.engine, delivery) is None
