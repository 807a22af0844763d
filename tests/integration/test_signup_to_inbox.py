"""From the signup form to the inbox and out again, with the dispatcher and a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from nurture.engine.dispatcher import Dispatcher
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.web import EMAIL, Web, build_web, web_dispatcher

LINK = re.compile(r"http://testserver/[a-z]+/[A-Za-z0-9_.\-]+")


@pytest.fixture
def web(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Web]:
    harness = build_web(database_url, engine, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def dispatcher(web: Web, smtp_server: Any) -> Dispatcher:
    return web_dispatcher(web, smtp_server.url)


def _text(message: Any) -> str:
    return cast(str, message.get_body(("plain",)).get_content())


def test_signup_confirm_receive_then_one_click_unsubscribe(web: Web, dispatcher: Dispatcher,
                                                           smtp_server: Any) -> None:
    assert web.signup().status_code == 200
    report = dispatcher.run(T0)
    assert report.sent == 1, report
    assert dispatcher.run(T0 + timedelta(hours=1)).sent == 0, "exactly one confirmation email"
    confirmation = smtp_server.messages[0].message
    assert confirmation["Subject"] == "Please confirm your email address"
    links = [link for link in LINK.findall(_text(confirmation)) if "/confirm/" in link]
    assert len(links) == 1
    path = urlsplit(links[0]).path

    browser = web.browser()
    landing = browser.get(path)
    assert landing.status_code == 200, "a GET (a link scanner) shows a button and confirms nothing"
    assert dispatcher.run(T0).sent == 0
    confirmed = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert confirmed.status_code == 200, confirmed.text

    assert dispatcher.run(T0).sent == 1
    welcome = smtp_server.messages[1].message
    assert welcome["Subject"] == "Ashwini, you are not alone in this"
    unsubscribe_url = welcome["List-Unsubscribe"].split(",")[0].strip("<> ")
    one_click = web.browser().post(urlsplit(unsubscribe_url).path,
                                   content=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200
    assert "set-cookie" not in one_click.headers

    for days in (2, 5, 30):
        assert dispatcher.run(T0 + timedelta(days=days)).sent == 0
    assert len(smtp_server.messages) == 2


def test_pause_holds_the_sequence_then_it_resumes_where_it_was(web: Web, dispatcher: Dispatcher,
                                                               smtp_server: Any) -> None:
    web.signup()
    dispatcher.run(T0)
    assert web.confirm().status_code == 200
    assert dispatcher.run(T0).sent == 1  # welcome
    assert web.preferences("pause", pause="2w").status_code == 200
    for days in (2, 5, 13):
        assert dispatcher.run(T0 + timedelta(days=days)).sent == 0
    resumed = dispatcher.run(T0 + timedelta(days=15))
    assert resumed.sent == 1
    subjects = [m.message["Subject"] for m in smtp_server.messages]
    assert subjects[-1] == "Why asking for help can feel risky to them"
    assert dispatcher.run(T0 + timedelta(days=25)).sent == 1
    assert [d.status.value for d in SqlStore(web.engine).deliveries_for(EMAIL)
            if d.step_key] == ["sent", "sent", "sent"]


def test_a_person_confirming_at_three_in_the_morning_gets_the_welcome_at_once(
        web: Web, dispatcher: Dispatcher, smtp_server: Any) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    night = datetime(2026, 3, 3, 3, 0, tzinfo=kolkata).astimezone(UTC)
    web.clock.now = night
    assert web.signup(time_zone="Asia/Kolkata", locale="en-IN").status_code == 200
    assert dispatcher.run(night).sent == 1, "the confirmation email goes at any hour"

    confirmed = web.confirm()
    assert confirmed.status_code == 200, confirmed.text
    assert "The first email is on its way now" in confirmed.text
    assert "will arrive during your daytime" not in confirmed.text

    report = dispatcher.run(night)
    assert report.sent == 1, f"the welcome goes in the same pass, at 03:00 local: {report}"
    assert smtp_server.messages[-1].message["Subject"] == "Ashwini, you are not alone in this"
    queued = [d for d in SqlStore(web.engine).deliveries_for(EMAIL)
              if d.step_key == "understanding"]
    assert [d.status.value for d in queued] == ["queued"]
    assert queued[0].due_at.astimezone(kolkata) == datetime(2026, 3, 5, 9, 0, tzinfo=kolkata), \
        "step 2 waits for its window: two days after 03:00, moved to the 09:00 opening"
    assert dispatcher.run(night + timedelta(days=2)).sent == 0
    assert dispatcher.run(queued[0].due_at).sent == 1
