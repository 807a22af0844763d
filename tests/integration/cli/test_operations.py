"""Operators: status, retention, export and erase, and logs that hold no personal data."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.logs import JsonFormatter
from nurture.setting_values import parse_admin_users, parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from nurture.store.models import Base, Delivery, Subscriber, suppression_table
from nurture.store.operations import beat, heartbeats, mark_stopped, purge_departed, queue_health
from nurture.store.rules import address_hash
from nurture.store.sql.store import SqlStore
from tests.support.cli import nurture
from tests.support.clock import T0
from tests.support.dispatchers import make_dispatcher
from tests.support.paths import ROOT

EMAIL, NAME = "meera.r@example.org", "Meera"


def _dispatcher(store: SqlStore, smtp_server: Any) -> Dispatcher:
    return make_dispatcher(store, ContentHolder(ROOT / "sequences", ROOT / "templates"),
                           SmtpTransport(parse_smtp_url(smtp_server.url), timeout=5),
                           owner="ops-test")


def _enroll(store: SqlStore, email: str = EMAIL) -> None:
    content = ContentHolder(ROOT / "sequences", ROOT / "templates").current
    person = make_person(email, NAME, "Europe/London", ["stigma", "fear_of_blame"])
    enroll(store, content, [person], "partner-hesitant", ConsentRecord(kind="operator", source="t"),
           T0)


def _all_values(engine: Engine) -> str:
    """Every value of every row of every table, as one text to search."""
    with engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in conn.execute(select(table)))


def test_heartbeats_and_queue_health(store: SqlStore, smtp_server: Any) -> None:
    _enroll(store)
    _enroll(store, "other@example.org")
    health = queue_health(store.engine, T0)
    assert (health.due, health.waiting, health.oldest_due_at) == (2, 2, T0)
    beat(store.engine, "host:1", now=T0, sent=0, content_version="v1", started_at=T0)
    _dispatcher(store, smtp_server).run(T0)
    beat(store.engine, "host:1", now=T0 + timedelta(seconds=5), sent=2, content_version="v1",
         started_at=T0)
    mark_stopped(store.engine, "host:1", T0 + timedelta(seconds=6))
    [process] = heartbeats(store.engine)
    assert (process.ticks, process.sent, process.stopped_at) == (2, 2, T0 + timedelta(seconds=6))
    assert queue_health(store.engine, T0).due == 0


def test_retention_keeps_history_but_no_personal_data(store: SqlStore, smtp_server: Any) -> None:
    _enroll(store)
    _dispatcher(store, smtp_server).run(T0)
    left_at = T0 + timedelta(days=1)
    with store.engine.begin() as conn:
        conn.execute(update(Subscriber).values(status="unsubscribed", updated_at=left_at))
        conn.execute(update(Delivery).where(Delivery.status == "sent").values(
            last_error=f"250 accepted for <{EMAIL}>"))
    assert purge_departed(store.engine, older_than=left_at, now=left_at) == 0, "not old enough"
    later = left_at + timedelta(days=31)
    assert purge_departed(store.engine, older_than=later - timedelta(days=30), now=later) == 1
    everything = _all_values(store.engine)
    for personal in (EMAIL, NAME, "fear_of_blame"):
        assert personal not in everything
    with store.engine.connect() as conn:
        hashes = set(conn.execute(select(suppression_table.c.address_sha256)).scalars())
        sent = conn.execute(select(Delivery.step_key).where(Delivery.status == "sent")).all()
    assert address_hash(EMAIL) in hashes
    assert [row.step_key for row in sent] == ["welcome"], "the delivery history stays"


@pytest.fixture
def env_with_db(cli_env: dict[str, str]) -> dict[str, str]:
    assert nurture("db", "upgrade", env=cli_env).returncode == 0
    return cli_env


def test_status_export_and_erase_commands(env_with_db: dict[str, str]) -> None:
    env = env_with_db
    assert nurture("enroll", EMAIL, "--sequence", "partner-hesitant", "--first-name", NAME,
                   "--now", "2026-03-02T10:00:00Z", env=env).returncode == 0
    status = json.loads(nurture("status", "--json", env=env).stdout)
    assert status["waiting"] == 1 and status["processes"] == []
    assert "queue:" in nurture("status", env=env).stdout

    exported = nurture("subscribers", "export", EMAIL.upper(), env=env)
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert EMAIL in exported.stdout and NAME in exported.stdout and data

    refused = nurture("subscribers", "erase", EMAIL, env=env)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    erased = nurture("subscribers", "erase", EMAIL, "--yes", env=env)
    assert erased.returncode == 0, erased.stderr
    missing = nurture("subscribers", "export", EMAIL, env=env)
    assert missing.returncode == 1 and "no subscriber" in missing.stderr
    again = nurture("enroll", EMAIL, "--sequence", "partner-hesitant", env=env)
    assert "suppressed" in again.stdout, "an erased address is never enrolled again"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_logs_hold_no_address_name_or_answer(env_with_db: dict[str, str], smtp_server: Any,
                                             log_format: str) -> None:
    env = dict(env_with_db, NURTURE_LOG_LEVEL="DEBUG", NURTURE_LOG_FORMAT=log_format)
    outputs = []
    for args in (["enroll", EMAIL, "--sequence", "partner-hesitant", "--first-name", NAME,
                  "--hesitations", "fear_of_blame,bad_past_experience", "--now",
                  "2026-03-02T10:00:00Z"],
                 ["dispatch", "--now", "2026-03-02T10:00:00Z"],
                 ["dispatch", "--now", "2026-03-04T10:00:00Z"]):
        result = nurture(*args, env=env)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stderr)
    smtp_server.stop()  # a failing relay logs too
    outputs.append(nurture("dispatch", "--now", "2026-03-09T10:00:00Z", env=env).stderr)
    logs = "\n".join(outputs)
    warning = '"level": "warning"' if log_format == "json" else " WARNING "
    assert warning in logs, "the relay failure was logged"
    for personal in (EMAIL, "meera.r", NAME, "fear_of_blame", "bad_past_experience"):
        assert personal not in logs


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("nurture.x", logging.INFO, __file__, 1, "sent", None, None)
    record.delivery = "abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "sent" and line["delivery"] == "abc" and line["level"] == "info"


def test_admin_password_hash_command(cli_env: dict[str, str]) -> None:
    import subprocess
    import sys

    from nurture.web.admin.auth import AdminOptions

    made = subprocess.run([sys.executable, "-m", "nurture", "admin", "hash-password", "asha"],
                          input="a long enough passphrase\n", env=cli_env, capture_output=True,
                          text=True, check=False)
    assert made.returncode == 0, made.stderr
    entry = made.stdout.strip()
    assert entry.startswith("asha:$argon2id$")
    options = AdminOptions(users=parse_admin_users(entry))
    assert options.users
