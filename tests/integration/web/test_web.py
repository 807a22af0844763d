"""The web app over HTTP on SQLite and PostgreSQL: double opt-in signup, confirmation, one-click
unsubscribe, pause and resume, export and erasure, the JSON API and the selection rules."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from sqlalchemy import Engine, insert, select, update

from nurture.content.library import ContentHolder
from nurture.content.selection import Selection, SelectionRule, load_selection, load_selection_file
from nurture.domain.model import Condition, Profile
from nurture.domain.problems import ContentInvalid
from nurture.engine.ports import SubscriberStatus
from nurture.services.runtime import Runtime
from nurture.store.accounts.store import AccountStore
from nurture.store.database import make_engine
from nurture.store.models import Base, ConsentEvent, Delivery, Enrollment, Subscriber, suppression_table
from nurture.store.rules import address_hash
from nurture.store.sql.store import SqlStore
from nurture.web.app import create_app
from nurture.web.crisis import FALLBACK_CRISIS, load_crisis
from nurture.web.forms import CONSENT_TEXT_SHA256
from nurture.web.options import WebOptions
from nurture.web.security import CONTENT_SECURITY_POLICY
from tests.support.clock import T0
from tests.support.paths import ROOT
from tests.support.web import (
    EMAIL,
    GOOD_FORM,
    NAME,
    Web,
    build_web,
    count_rows,
    csrf_of,
    rows,
    serve,
    subscriber_row,
    web_settings,
)

# -- end to end over real HTTP ------------------------------------------------------------------


def test_end_to_end_over_real_http(web: Web) -> None:
    first_step = web.content.current.sequence("sample").steps[0].key
    with serve(web.app) as base_url, httpx.Client(base_url=base_url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert client.cookies.get("nurture_csrf")
        signed_up = client.post("/", data={**GOOD_FORM, "csrf_token": csrf_of(page)})
        assert signed_up.status_code == 200
        assert "Check your inbox" in signed_up.text

        subscriber = subscriber_row(web.engine)
        assert subscriber.status == SubscriberStatus.PENDING.value
        assert (subscriber.first_name, subscriber.time_zone) == (NAME, "Europe/London")
        assert sorted(subscriber.hesitations) == ["not_sure", "stigma"]
        (delivery,) = rows(web.engine, Delivery)
        assert (delivery.kind, delivery.status, delivery.due_at) == ("confirmation", "queued", T0)
        assert delivery.enrollment_id is None and delivery.step_key is None
        (event,) = rows(web.engine, ConsentEvent)
        assert (event.kind, event.source, event.ip) == ("signup", "web-form v1", "127.0.0.1")
        assert event.consent_text_sha256 == CONSENT_TEXT_SHA256
        assert event.user_agent and "python-httpx" in event.user_agent

        # The dispatcher will send this link; the test signs it itself.
        confirm_url = f"/confirm/{web.signer.sign('confirm', subscriber.id)}"
        shown = client.get(confirm_url)
        assert shown.status_code == 200 and "Yes, start my emails" in shown.text
        assert client.head(confirm_url).status_code == 200
        assert subscriber_row(web.engine).status == "pending", "GET and HEAD must not confirm"
        assert rows(web.engine, Enrollment) == []

        web.clock.advance(minutes=5)
        confirmed = client.post(confirm_url, data={"csrf_token": csrf_of(shown)})
        assert confirmed.status_code == 200 and "You're all set" in confirmed.text
        subscriber = subscriber_row(web.engine)
        assert subscriber.status == "active"
        assert subscriber.confirmed_at == T0 + timedelta(minutes=5)
        (enrollment,) = rows(web.engine, Enrollment)
        assert (enrollment.sequence_key, enrollment.status) == ("sample", "active")
        steps = [d for d in rows(web.engine, Delivery) if d.kind == "step"]
        assert [(d.step_key, d.status, d.enrollment_id) for d in steps] == [
            (first_step, "queued", enrollment.id)]
        assert [e.kind for e in rows(web.engine, ConsentEvent)] == ["signup", "confirm"]

        again = client.post(confirm_url, data={"csrf_token": csrf_of(shown)})
        assert again.status_code == 200 and "You're all set" in again.text
        assert len(rows(web.engine, Enrollment)) == 1, "confirming twice is harmless"

        preferences_url = f"/p/{web.signer.sign('preferences', subscriber.id)}"
        page = client.get(preferences_url)
        assert page.status_code == 200 and "Your emails are on" in page.text
        paused = client.post(preferences_url, data={"csrf_token": csrf_of(page), "action": "pause",
                                                    "pause": "2w"})
        assert paused.status_code == 200 and "Paused until" in paused.text
        (enrollment,) = rows(web.engine, Enrollment)
        assert enrollment.status == "paused"
        assert enrollment.paused_until == web.clock.now + timedelta(weeks=2)

        resumed = client.post(preferences_url, data={"csrf_token": csrf_of(paused),
                                                     "action": "resume"})
        assert resumed.status_code == 200 and "emails are on again" in resumed.text
        (enrollment,) = rows(web.engine, Enrollment)
        assert (enrollment.status, enrollment.paused_until) == ("active", None)

        # RFC 8058 one-click, as a mail provider sends it: no cookie, no CSRF field.
        unsubscribe_url = f"{base_url}/u/{web.signer.sign('unsubscribe', subscriber.id)}"
        one_click = httpx.post(unsubscribe_url, content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"},
                               follow_redirects=False)
        assert one_click.status_code == 200
        assert "set-cookie" not in one_click.headers
        assert "location" not in one_click.headers
        assert subscriber_row(web.engine).status == "unsubscribed"
        (enrollment,) = rows(web.engine, Enrollment)
        assert (enrollment.status, enrollment.end_reason) == ("exited", "unsubscribed")
        assert [d.status for d in rows(web.engine, Delivery) if d.kind == "step"] == ["skipped"]
        assert "unsubscribe" in [e.kind for e in rows(web.engine, ConsentEvent)]

        page = client.get(preferences_url)
        erased = client.post(preferences_url, data={"csrf_token": csrf_of(page), "action": "erase",
                                                    "confirm_erase": "yes"})
        assert erased.status_code == 200 and "Your data is erased" in erased.text

    assert_nothing_left(web.engine, EMAIL, NAME)
    assert web.browser().get(preferences_url).status_code == 404


def assert_nothing_left(engine: Engine, email: str, name: str) -> None:
    """Neither the address nor the name in any column of any table; only the suppression hash."""
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in row._mapping.items():
                    text = json.dumps(value, default=str) if not isinstance(value, str) else value
                    assert email.lower() not in text.lower(), f"{table.name}.{column} keeps the address"
                    assert name.lower() not in text.lower(), f"{table.name}.{column} keeps the name"
        suppression = conn.execute(select(suppression_table)).all()
    assert [(row.address_sha256, row.reason) for row in suppression] == [
        (address_hash(email), "erased")]


# -- signup rules -------------------------------------------------------------------------------


def test_pending_address_is_sent_again_at_most_once_per_interval(web: Web) -> None:
    assert web.signup().status_code == 200
    assert web.signup().status_code == 200
    assert len(rows(web.engine, Delivery)) == 1, "a confirmation is still waiting to go out"
    with web.engine.begin() as conn:
        conn.execute(update(Delivery.__table__).values(status="sent", sent_at=T0))  # type: ignore[arg-type]
    web.clock.advance(minutes=9)
    assert web.signup().status_code == 200
    assert len(rows(web.engine, Delivery)) == 1, "sent less than 10 minutes ago"
    web.clock.advance(minutes=2)
    assert web.signup(first_name="Ash").status_code == 200
    deliveries = rows(web.engine, Delivery)
    assert [(d.kind, d.status, d.due_at) for d in deliveries] == [
        ("confirmation", "sent", T0), ("confirmation", "queued", web.clock.now)]
    assert subscriber_row(web.engine).first_name == "Ash", "a pending signup takes the latest answers"
    assert [e.kind for e in rows(web.engine, ConsentEvent)] == ["signup"] * 4


def test_active_and_suppressed_addresses_get_the_same_page_and_nothing_else(web: Web) -> None:
    new = web.signup()
    web.confirm()
    before = count_rows(web.engine)
    web.clock.advance(hours=2)
    active = web.signup(first_name="Mallory", hesitations=["not_that_bad"])
    assert active.status_code == 200
    assert active.text == new.text, "the page must not reveal that the address is subscribed"
    assert count_rows(web.engine) == before
    subscriber = subscriber_row(web.engine)
    assert (subscriber.first_name, subscriber.status) == (NAME, "active"), "a stranger changes nothing"

    with web.engine.begin() as conn:
        conn.execute(insert(suppression_table).values(
            id=UUID(int=1), address_sha256=address_hash("blocked@example.org"), reason="bounced",
            at=T0))
    suppressed = web.signup(email="Blocked@Example.org")
    assert suppressed.status_code == 200 and suppressed.text == new.text
    assert count_rows(web.engine) == before


def test_someone_who_left_can_sign_up_again_but_an_old_link_does_not_bring_them_back(
        web: Web) -> None:
    web.signup()
    old_confirm = web.token("confirm")
    web.confirm()
    browser = web.browser()
    url = f"/u/{web.token('unsubscribe')}"
    assert browser.post(url, data={"csrf_token": browser.csrf(url)}).status_code == 200
    assert subscriber_row(web.engine).status == "unsubscribed"

    browser = web.browser()
    page = browser.get(f"/confirm/{old_confirm}")
    refused = browser.post(f"/confirm/{old_confirm}", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 409 and "sign up again" in refused.text
    assert subscriber_row(web.engine).status == "unsubscribed"

    web.clock.advance(hours=1)
    assert web.signup().status_code == 200
    assert subscriber_row(web.engine).status == "pending"
    confirmations = [d for d in rows(web.engine, Delivery) if d.kind == "confirmation"]
    assert [d.status for d in confirmations] == ["skipped", "queued"]
    assert web.confirm().status_code == 200
    assert subscriber_row(web.engine).status == "active"
    enrollments = rows(web.engine, Enrollment)
    assert sorted(e.status for e in enrollments) == ["active", "exited"]


def test_the_safety_answer_shows_help_and_keeps_nothing(web: Web) -> None:
    response = web.signup(safety="yes", locale="en-IN")
    assert response.status_code == 200
    assert "Your safety comes first" in response.text
    assert "haven't kept anything" in response.text
    assert "Tele-MANAS" in response.text, "the helplines of the chosen locale, from templates/locales/"
    assert count_rows(web.engine) == {"subscriber": 0, "consent_event": 0, "delivery": 0,
                                      "enrollment": 0}
    assert web.browser().get("/help?locale=en-IN").status_code == 200


def test_crisis_resources_fall_back_from_locale_to_language_to_english(tmp_path: Path) -> None:
    locales = tmp_path / "locales"
    locales.mkdir()
    assert load_crisis(tmp_path, "en-IN") == FALLBACK_CRISIS
    (locales / "en.yaml").write_text(
        "crisis:\n  heading: Help in English\n  text: Call someone.\n"
        "  lines:\n    - {name: Line A, contact: '111', note: any time}\n", encoding="utf-8")
    assert load_crisis(tmp_path, "en-IN").heading == "Help in English"
    assert load_crisis(tmp_path, "en-IN").lines[0].contact == "111"
    (locales / "en-IN.yaml").write_text(
        "crisis:\n  heading: Help in India\n  text: Call someone.\n  lines: []\n", encoding="utf-8")
    assert load_crisis(tmp_path, "en-IN").heading == "Help in India"
    assert load_crisis(tmp_path, "../../etc/passwd").heading == "Help in English"
    (locales / "en.yaml").write_text("crisis: [not, a, mapping]\n", encoding="utf-8")
    assert load_crisis(tmp_path, "en") == FALLBACK_CRISIS


# -- pause, resume, answers, export -------------------------------------------------------------


def test_pause_until_a_date_starts_at_local_midnight_and_resume_keeps_later_deliveries(
        web: Web) -> None:
    web.signup(time_zone="Asia/Kolkata")
    web.confirm()
    bad = web.preferences("pause", pause="date", until="2026-03-02")
    assert bad.status_code == 422 and "after today" in bad.text
    assert web.preferences("pause").status_code == 422

    assert web.preferences("pause", pause="date", until="2026-04-01").status_code == 200
    (enrollment,) = rows(web.engine, Enrollment)
    # Midnight in Kolkata (UTC+05:30) is 18:30 UTC the day before.
    assert enrollment.paused_until == datetime(2026, 3, 31, 18, 30, tzinfo=UTC)
    page = web.browser().get(f"/p/{web.token('preferences')}")
    assert "paused until Wednesday, 1 April 2026" in page.text

    # One delivery held back into the future, one overdue.
    (step,) = [d for d in rows(web.engine, Delivery) if d.kind == "step"]
    later = T0 + timedelta(days=3)
    with web.engine.begin() as conn:
        conn.execute(update(Delivery.__table__).where(Delivery.id == step.id)  # type: ignore[arg-type]
                     .values(due_at=later))
        conn.execute(insert(Delivery.__table__).values(  # type: ignore[arg-type]
            id=UUID(int=7), kind="step", subscriber_id=step.subscriber_id,
            enrollment_id=enrollment.id, step_key="next-steps", status="queued",
            due_at=T0 - timedelta(days=1), attempts=0, created_at=T0))
    web.clock.advance(hours=1)
    assert web.preferences("resume").status_code == 200
    (enrollment,) = rows(web.engine, Enrollment)
    assert (enrollment.status, enrollment.paused_until) == ("active", None)
    due = {d.step_key: d.due_at for d in rows(web.engine, Delivery) if d.kind == "step"}
    assert due == {"welcome": later, "next-steps": web.clock.now}


def test_answers_and_discreet_mode_can_be_changed(web: Web) -> None:
    web.signup()
    web.confirm()
    assert web.preferences("answers", hesitations=["fear_of_blame", "unfamiliar"]).status_code == 200
    assert sorted(subscriber_row(web.engine).hesitations) == ["fear_of_blame", "unfamiliar"]
    assert web.preferences("answers", hesitations=["no_such_reason"]).status_code == 422
    assert web.preferences("discreet", discreet="yes").status_code == 200
    assert subscriber_row(web.engine).discreet is True
    assert web.preferences("discreet").status_code == 200
    assert subscriber_row(web.engine).discreet is False


def test_download_my_data_has_everything_but_lease_internals(web: Web) -> None:
    web.signup()
    web.clock.advance(minutes=1)
    web.confirm()
    response = web.preferences("export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    data = response.json()
    assert data["subscriber"]["email"] == EMAIL and data["subscriber"]["first_name"] == NAME
    assert [e["kind"] for e in data["consent_events"]] == ["signup", "confirm"]
    assert [e["sequence_key"] for e in data["enrollments"]] == ["sample"]
    assert sorted(d["kind"] for d in data["deliveries"]) == ["confirmation", "step"]
    assert not any("lease" in key for d in data["deliveries"] for key in d)


def test_erase_needs_the_box_ticked_then_removes_everything(web: Web) -> None:
    web.signup()
    web.confirm()
    refused = web.preferences("erase")
    assert refused.status_code == 422 and "tick the box" in refused.text
    assert count_rows(web.engine)["subscriber"] == 1
    url = f"/p/{web.token('preferences')}"
    assert web.preferences("erase", confirm_erase="yes").status_code == 200
    assert_nothing_left(web.engine, EMAIL, NAME)
    assert web.browser().get(url).status_code == 404
    assert web.signup().status_code == 200
    assert count_rows(web.engine)["subscriber"] == 0, "an erased address is suppressed"


def test_signups_never_confirmed_are_purged_after_a_while(web: Web) -> None:
    web.signup()
    web.signup(email="confirmed@example.org")
    web.confirm(email="confirmed@example.org")
    accounts = AccountStore(web.engine)
    assert accounts.purge_unconfirmed(older_than=T0) == 0
    assert accounts.purge_unconfirmed(older_than=T0 + timedelta(seconds=1)) == 1
    assert [row.email for row in rows(web.engine, Subscriber)] == ["confirmed@example.org"]
    assert len({d.subscriber_id for d in rows(web.engine, Delivery)}) == 1


def test_get_and_head_never_unsubscribe(web: Web) -> None:
    web.signup()
    web.confirm()
    url = f"/u/{web.token('unsubscribe')}"
    browser = web.browser()
    page = browser.get(url)
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert "/p/" in page.text, "pausing is offered instead"
    assert browser.request("HEAD", url).status_code == 200
    assert subscriber_row(web.engine).status == "active"
    done = browser.post(url, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 200 and "You're unsubscribed" in done.text
    assert subscriber_row(web.engine).status == "unsubscribed"
    again = web.browser().post(url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200, "unsubscribing twice is fine"
    assert [e.kind for e in rows(web.engine, ConsentEvent)].count("unsubscribe") == 1


# -- JSON API, health, headers ------------------------------------------------------------------


def test_json_api_signup_is_double_opt_in_with_a_neutral_answer(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    options = WebOptions(cors_origins=("https://clinic.example.org",))
    web = build_web(database_url, engine, tmp_path, options)
    try:
        browser = web.browser()
        body = {"email": EMAIL, "first_name": NAME, "hesitations": ["stigma"],
                "time_zone": "Asia/Kolkata", "locale": "en-IN", "consent": True, "unsafe": False}
        response = browser.post("/api/v1/subscribers", json=body,
                                headers={"Origin": "https://clinic.example.org"})
        assert response.status_code == 202
        assert response.json()["status"] == "accepted"
        assert response.headers["access-control-allow-origin"] == "https://clinic.example.org"
        assert subscriber_row(web.engine).status == "pending"
        assert [(e.kind, e.source) for e in rows(web.engine, ConsentEvent)] == [("signup", "api v1")]
        assert len(rows(web.engine, Delivery)) == 1

        again = browser.post("/api/v1/subscribers", json=body)
        assert (again.status_code, again.json()) == (202, response.json())
        assert len(rows(web.engine, Delivery)) == 1

        unsafe = browser.post("/api/v1/subscribers", json={**body, "email": "x@example.org",
                                                           "unsafe": True})
        assert unsafe.status_code == 200 and unsafe.json()["status"] == "not_signed_up"
        assert unsafe.json()["crisis"]["heading"]
        assert count_rows(web.engine)["subscriber"] == 1

        other = browser.request("OPTIONS", "/api/v1/subscribers", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
        page = browser.get("/", headers={"Origin": "https://clinic.example.org"})
        assert "access-control-allow-origin" not in page.headers, "CORS is for the API only"

        schema = browser.get("/openapi.json").json()
        operation = schema["paths"]["/api/v1/subscribers"]["post"]
        assert "202" in operation["responses"]
        assert "consent" in schema["components"]["schemas"]["SignupRequest"]["required"]
    finally:
        web.close()


def test_health_check_asks_the_database(web: Web) -> None:
    response = web.browser().get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_health_check_reports_a_database_it_cannot_reach(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    engine = make_engine(url)
    web = build_web(url, engine, tmp_path)
    (tmp_path / "missing" / "dir").rmdir()
    try:
        response = web.browser().get("/healthz")
        assert (response.status_code, response.json()) == (503, {"status": "unavailable"})
    finally:
        web.close()
        engine.dispose()


def test_every_response_carries_the_security_headers(web: Web) -> None:
    browser = web.browser()
    for url in ("/", "/help", "/static/site.css", "/static/timezone.js", "/confirm/nonsense",
                "/no-such-page"):
        response = browser.get(url)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert response.headers["x-content-type-options"] == "nosniff", url
        assert response.headers["referrer-policy"] == "no-referrer", url
    assert browser.get("/static/site.css").headers["content-type"].startswith("text/css")
    assert "javascript" in browser.get("/static/timezone.js").headers["content-type"]
    assert browser.get("/").headers["cache-control"] == "no-store"
    cookie = browser.get("/").headers["set-cookie"].lower()
    assert "nurture_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_pages_have_no_inline_script_or_style_and_every_input_a_label() -> None:
    for path in sorted((ROOT / "templates" / "pages").glob("*.html")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\sstyle\s*=", text, re.IGNORECASE), path.name
        assert not re.search(r"<style", text, re.IGNORECASE), path.name
        assert not re.search(r"\son[a-z]+\s*=", text, re.IGNORECASE), path.name
        for script in re.findall(r"<script[^>]*>", text, re.IGNORECASE):
            assert "src=" in script, f"{path.name}: inline script"
        for match in re.finditer(r'<(input|select|textarea)\b[^>]*\bid="([^"]+)"', text):
            if 'type="hidden"' in match.group(0):
                continue
            assert f'for="{match.group(2)}"' in text, f"{path.name}: no label for {match.group(2)}"


# -- options and selection ----------------------------------------------------------------------


def test_the_real_selection_file_loads_and_defaults_to_partner_hesitant() -> None:
    selection = load_selection(ROOT / "sequences")
    assert selection.default == "partner-hesitant"
    assert selection.choose(Profile(hesitations=frozenset({"stigma"}))) in {"partner-hesitant"} | {
        rule.sequence for rule in selection.rules}


def test_selection_rules_choose_the_first_match_and_report_problems_with_lines(
        tmp_path: Path) -> None:
    path = tmp_path / "selection.yaml"
    path.write_text(
        "rules:\n"
        "  - when:\n"
        "      hesitations_any: [stigma, fear_of_blame]\n"
        "    sequence: gentle\n"
        "  - when: {locale_in: [en-IN]}\n"
        "    sequence: india\n"
        "default: sample\n", encoding="utf-8")
    selection, problems = load_selection_file(path)
    assert problems == [] and selection is not None
    assert selection.rules[0] == SelectionRule(
        when=Condition(hesitations_any=frozenset({"stigma", "fear_of_blame"})),
        sequence="gentle", line=2)
    assert selection.choose(Profile(hesitations=frozenset({"fear_of_blame"}), locale="en-IN")) == \
        "gentle"
    assert selection.choose(Profile(locale="en-IN")) == "india"
    assert selection.choose(Profile()) == "sample"
    assert [p.line for p in selection.check_sequences({"sample", "gentle"})] == [5]
    reserved = Selection(rules=(), default="system", default_line=3).check_sequences(
        {"sample", "system"})
    assert [(p.line, p.message) for p in reserved] == [
        (3, "nobody can join the 'system' sequence (it holds the product's own emails)")]

    path.write_text(
        "rules:\n"
        "  - when:\n"
        "      hesitations_any: [stigma, made_up]\n"
        "    sequence: Not A Key\n"
        "  - sequence: gentle\n"
        "  - when: {}\n"
        "    sequence: gentle\n"
        "color: blue\n", encoding="utf-8")
    selection, problems = load_selection_file(path)
    assert selection is None
    found = {(p.line, p.message.split("'")[0]) for p in problems}
    assert (3, "unknown hesitation reason ") in found
    assert (4, "the `sequence` of rule 1 must be a sequence key") in found
    assert (5, "rule 2 has no `when`") in found
    assert (6, "the `when` of rule 3 has no condition") in found
    assert (8, "unknown field ") in found
    assert (1, "there is no `default` sequence") in found
    assert all(str(p).startswith(f"{path}:") for p in problems)

    path.write_text("default: [oops\n", encoding="utf-8")
    with pytest.raises(ContentInvalid, match="not valid YAML"):
        load_selection(tmp_path)
    assert Selection(rules=(), default="x").choose(Profile()) == "x"


def test_unknown_default_sequence_stops_the_app_from_starting(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    settings = web_settings(database_url, tmp_path)
    (settings.sequences_dir / "selection.yaml").write_text("default: no-such-sequence\n",
                                                           encoding="utf-8")
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine),
                      content=ContentHolder(settings.sequences_dir, settings.templates_dir))
    with pytest.raises(ContentInvalid, match="there is no sequence 'no-such-sequence'"):
        create_app(settings, runtime=runtime, options=WebOptions())
