"""A booked consult, from the email link or the events API: ends the sequence, starts the follow-up."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from nurture.config import Settings
from nurture.content.library import ContentHolder
from nurture.services.runtime import Runtime
from nurture.store.models import Delivery, Enrollment
from nurture.store.sql.store import SqlStore
from nurture.store.stats import step_stats
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.clock import Clock
from tests.support.paths import ROOT
from tests.support.web import EMAIL, SECRET, Web

API_KEY = "events-api-key-0123456789abcdef"
FOLLOW_UP = """key: after-booking
name: After booking
window:
  hours: "00:00-24:00"
steps:
  - key: getting-ready
    delay: 0h
    template: sample/next-steps.md
    subject: Getting ready
    discreet_subject: Your notes continue
"""


@pytest.fixture
def web(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Web]:
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, sequences / name)
    sample = (sequences / "sample.yaml").read_text()
    (sequences / "sample.yaml").write_text(sample.replace(
        "exit_on: [consult_booked]",
        "exit_on: [consult_booked]\nfollow_up:\n  consult_booked: after-booking"))
    (sequences / "after-booking.yaml").write_text(FOLLOW_UP)
    (sequences / "selection.yaml").write_text("default: sample\n")
    settings = Settings(database_url=database_url, secret_key=SECRET, base_url="http://testserver",
                        sequences_dir=sequences, templates_dir=ROOT / "templates",
                        api_key=API_KEY)
    content = ContentHolder(settings.sequences_dir, settings.templates_dir)
    clock = Clock()
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
    app = create_app(settings, runtime=runtime, options=WebOptions(), clock=clock)
    harness = Web(app=app, engine=engine, clock=clock, settings=settings, content=content)
    yield harness
    harness.close()


def _enrollments(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Enrollment.sequence_key, Enrollment.status,
                                   Enrollment.end_reason)).all()
    return {key: (status, reason) for key, status, reason in rows}


def _signed_up_and_confirmed(web: Web) -> None:
    assert web.signup().status_code == 200
    assert web.confirm().status_code == 200
    assert _enrollments(web.engine) == {"sample": ("active", None)}


def test_the_booked_link_converts_and_starts_the_follow_up(web: Web) -> None:
    _signed_up_and_confirmed(web)
    browser = web.browser()
    path = f"/booked/{web.token('booked')}"
    assert browser.get(path).status_code == 200
    assert _enrollments(web.engine) == {"sample": ("active", None)}, "GET changes nothing"
    done = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert done.status_code == 200, done.text
    assert _enrollments(web.engine) == {"sample": ("completed", "consult_booked"),
                                        "after-booking": ("active", None)}
    with web.engine.connect() as conn:
        statuses = dict(conn.execute(select(Delivery.step_key, Delivery.status)
                                     .where(Delivery.step_key.is_not(None))).all())
    assert statuses == {"welcome": "skipped", "getting-ready": "queued"}

    again = browser.post(path, data={"csrf_token": browser.csrf(path)})
    assert again.status_code == 200
    assert len(_enrollments(web.engine)) == 2, "a second click starts nothing more"
    assert step_stats(web.engine, sequence="sample")[("sample", "welcome")].counts["skipped"] == 1


def test_a_forged_booked_link_or_missing_csrf_changes_nothing(web: Web) -> None:
    _signed_up_and_confirmed(web)
    browser = web.browser()
    assert browser.get("/booked/not-a-token").status_code == 400
    wrong_purpose = f"/booked/{web.token('unsubscribe')}"
    assert browser.get(wrong_purpose).status_code == 400
    path = f"/booked/{web.token('booked')}"
    assert browser.post(path, data={}).status_code == 403
    assert _enrollments(web.engine) == {"sample": ("active", None)}


def test_the_events_api_needs_its_key(web: Web) -> None:
    _signed_up_and_confirmed(web)
    subscriber = web.subscriber_id(EMAIL)
    url = f"/api/v1/subscribers/{subscriber}/events"
    client = web.browser()
    assert client.post(url, json={"event": "consult_booked"}).status_code == 401
    assert client.post(url, json={"event": "consult_booked"},
                       headers={"X-API-Key": "wrong" * 6}).status_code == 401
    assert client.post(url, json={"event": "bought_a_boat"},
                       headers={"X-API-Key": API_KEY}).status_code == 422
    unknown = "00000000-0000-0000-0000-000000000001"
    assert client.post(f"/api/v1/subscribers/{unknown}/events", json={"event": "consult_booked"},
                       headers={"X-API-Key": API_KEY}).status_code == 404
    accepted = client.post(url, json={"event": "consult_booked"}, headers={"X-API-Key": API_KEY})
    assert accepted.status_code == 202
    assert accepted.json() == {"ended": 1, "started": ["after-booking"]}
    assert _enrollments(web.engine)["sample"] == ("completed", "consult_booked")
    schema = client.get("/openapi.json").json()
    assert "/api/v1/subscribers/{subscriber_id}/events" in schema["paths"]
