"""The quiet links of emails over HTTP, on SQLite and PostgreSQL: "my partner said yes" (/yes/<token>)
and "I've started on my own" (/solo/<token>) show one button on GET and change nothing; POST records
the event, which ends the sequence and starts its follow-up, and thanks the person. Forged, expired
and misdirected links change nothing."""

from __future__ import annotations

import html
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
from sqlalchemy import Engine, select

from nurture.config import Settings
from nurture.content.library import ContentHolder
from nurture.services.runtime import Runtime
from nurture.store.models import Enrollment
from nurture.store.sql.store import SqlStore
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.clock import Clock
from tests.support.paths import ROOT
from tests.support.web import SECRET, Web

FOLLOW_UP = """key: {key}
name: {key}
window:
  hours: "00:00-24:00"
steps:
  - key: first-note
    delay: 0h
    template: sample/next-steps.md
    subject: A first note
    discreet_subject: Your notes continue
"""
DAY = 24 * 3600


@dataclass(frozen=True)
class Link:
    path: str
    purpose: str
    event: str
    follow_up: str
    button: str
    thanks: str


LINKS = [
    Link("yes", "partner_yes", "partner_said_yes", "after-yes", "Yes, they said yes",
         "That's good news"),
    Link("solo", "started_solo", "started_solo", "after-solo", "Yes, I've started",
         "A good place to start"),
]


@pytest.fixture
def web(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Web]:
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, sequences / name)
    sample = (sequences / "sample.yaml").read_text()
    (sequences / "sample.yaml").write_text(sample.replace(
        "exit_on: [consult_booked]",
        "exit_on: [consult_booked, partner_said_yes, started_solo]\n"
        "follow_up:\n  partner_said_yes: after-yes\n  started_solo: after-solo"))
    for key in ("after-yes", "after-solo"):
        (sequences / f"{key}.yaml").write_text(FOLLOW_UP.format(key=key))
    (sequences / "selection.yaml").write_text("default: sample\n")
    settings = Settings(database_url=database_url, secret_key=SECRET, base_url="http://testserver",
                        sequences_dir=sequences, templates_dir=ROOT / "templates")
    content = ContentHolder(settings.sequences_dir, settings.templates_dir)
    clock = Clock()
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
    app = create_app(settings, runtime=runtime, options=WebOptions(), clock=clock)
    harness = Web(app=app, engine=engine, clock=clock, settings=settings, content=content)
    yield harness
    harness.close()


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def _enrollments(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Enrollment.sequence_key, Enrollment.status,
                                   Enrollment.end_reason)).all()
    return {key: (status, reason) for key, status, reason in rows}


def _signed_up_and_confirmed(web: Web, **changes: str) -> None:
    assert web.signup(**changes).status_code == 200
    assert web.confirm().status_code == 200
    assert _enrollments(web.engine) == {"sample": ("active", None)}


def _old_token(web: Web, purpose: str, age_seconds: int) -> str:
    """A genuine token signed `age_seconds` ago (itsdangerous stamps tokens with the wall clock)."""
    subscriber = web.subscriber_id()
    with mock.patch.object(time, "time", return_value=time.time() - age_seconds):
        return web.signer.sign(purpose, subscriber)


@pytest.mark.parametrize("link", LINKS, ids=[link.path for link in LINKS])
def test_the_link_shows_a_button_then_records_the_event_and_thanks(web: Web, link: Link) -> None:
    _signed_up_and_confirmed(web, locale="en-IN")
    browser = web.browser()
    path = f"/{link.path}/{web.token(link.purpose)}"
    shown = browser.get(path)
    assert shown.status_code == 200
    assert f">{link.button}</button>" in text(shown)
    assert shown.text.count("<form") == 1 and f'action="{path}"' in shown.text
    assert '<html lang="en-IN" dir="ltr">' in shown.text, "the subscriber's own locale"
    assert browser.request("HEAD", path).status_code == 200
    assert _enrollments(web.engine) == {"sample": ("active", None)}, "a GET changes nothing"

    done = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert done.status_code == 200, done.text
    assert link.thanks in text(done) and "will follow" in text(done)
    assert 'href="/p/' in done.text
    assert _enrollments(web.engine) == {"sample": ("completed", link.event),
                                        link.follow_up: ("active", None)}

    again = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert again.status_code == 200 and "will follow" not in again.text, \
        "a second press starts nothing more, and the page promises nothing more"
    assert len(_enrollments(web.engine)) == 2


@pytest.mark.parametrize("link", LINKS, ids=[link.path for link in LINKS])
def test_bad_expired_and_misdirected_links_change_nothing(web: Web, link: Link) -> None:
    _signed_up_and_confirmed(web)
    browser = web.browser()
    good = web.token(link.purpose)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token in ("not-a-token", tampered, web.token("booked"), web.token("preferences")):
        for answer in (browser.get(f"/{link.path}/{token}"),
                       browser.post(f"/{link.path}/{token}",
                                    data={"csrf_token": browser.csrf("/")})):
            assert answer.status_code == 400 and "This link doesn't work" in text(answer)
    expired = _old_token(web, link.purpose, 200 * DAY)
    for answer in (browser.get(f"/{link.path}/{expired}"),
                   browser.post(f"/{link.path}/{expired}", data={"csrf_token": browser.csrf("/")})):
        assert answer.status_code == 410
        assert "This link is from an older email" in text(answer)
        assert "nothing has changed" in text(answer)
    recent = _old_token(web, link.purpose, 150 * DAY)
    assert browser.get(f"/{link.path}/{recent}").status_code == 200, "five months old still works"
    assert browser.post(f"/{link.path}/{good}", data={}).status_code == 403, "no CSRF field"
    assert _enrollments(web.engine) == {"sample": ("active", None)}


def test_a_link_for_someone_who_left_finds_nothing(web: Web) -> None:
    _signed_up_and_confirmed(web)
    assert web.preferences("unsubscribe").status_code == 200
    browser = web.browser()
    path = f"/yes/{web.token('partner_yes')}"
    answer = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert answer.status_code == 404 and "There's nothing here any more" in text(answer)
    assert _enrollments(web.engine) == {"sample": ("exited", "unsubscribed")}


def test_the_booked_link_expires_like_the_other_quiet_links(web: Web) -> None:
    _signed_up_and_confirmed(web)
    answer = web.browser().get(f"/booked/{_old_token(web, 'booked', 200 * DAY)}")
    assert answer.status_code == 410 and "older email" in answer.text
