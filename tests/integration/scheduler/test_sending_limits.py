"""A relay's daily cap and a destination that defers us, with real `nurture` processes on
PostgreSQL and a real SMTP server on loopback: the cap sends what it allows and holds the rest
for the next day, which `status` explains; Gmail answering 421 4.7.0 slows Gmail alone, and its
recipients are all delivered once the relay accepts them again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from nurture.clock import utcnow
from nurture.content.library import load_content
from nurture.domain.people import make_person
from nurture.engine.enrollment import enroll
from nurture.engine.pacing import SEND_AHEAD_LIMIT
from nurture.engine.ports import ConsentRecord
from nurture.store.models import Delivery
from nurture.store.sql.store import SqlStore
from tests.support.schedulers import Schedulers, copy_content, scheduler_env, wait_until
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer


def _nurture(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nurture", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _enroll(store: SqlStore, dirs: tuple[Path, Path], emails: list[str], at: datetime) -> None:
    people = [make_person(email, time_zone="UTC") for email in emails]
    enroll(store, load_content(*dirs), people, "sample",
           ConsentRecord(kind="operator", source="test"), at)


def _welcomes(store: SqlStore) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(dict(conn.execute(select(Delivery.status, func.count())
                                         .where(Delivery.step_key == "welcome")
                                         .group_by(Delivery.status)).all()))


def _ids(messages: list[ReceivedMessage]) -> Counter[str]:
    return Counter(str(message.message["Message-ID"]) for message in messages)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_a_daily_cap_sends_what_it_allows_and_the_rest_waits_for_the_next_day(
        database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer,
        tmp_path: Path) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    relays = tmp_path / "relays.yaml"
    relays.write_text(f"relays:\n  - name: a\n    url: {smtp_server.url}\n"
                      "    limits: {per_day: 30, per_second: 200}\n")
    env = scheduler_env(database_url, smtp_server.port, dirs, NURTURE_RELAYS_FILE=str(relays))
    now = utcnow().replace(microsecond=0)
    _enroll(store, dirs, [f"capped{index}@example.org" for index in range(50)],
            now - timedelta(seconds=1))

    first = json.loads(_nurture(env, "dispatch", "--json", "--now", now.isoformat()))
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    status = json.loads(_nurture(env, "status", "--json"))["sending"]
    text = _nurture(env, "status")
    print(f"\n[limits] daily cap of 30, 50 due: first day {first}; status {status}")
    assert (first["sent"], first["held"]) == (30, 20)
    assert len(smtp_server.messages) == 30
    assert status["relays"]["a"] == {"breaker": {}, "limits": "200/s, 30/day",
                                     "day_cap": 30, "sent_today": 30, "left_today": 0,
                                     "resumes_at": midnight.isoformat()}
    held = status["held"]["relays"]
    assert (held["count"], held["until"]) == (20, midnight.isoformat())
    assert "a: its daily cap of 30" in held["why"]
    assert f"its daily cap is reached: it sends again at {midnight.isoformat()}" in text
    assert "waiting for a relay's limits: 20 deliveries" in text

    # Nothing goes out before midnight, however often the schedulers look.
    again = json.loads(_nurture(env, "dispatch", "--json", "--now",
                                (midnight - timedelta(seconds=1)).isoformat()))
    assert again["claimed"] == 0
    second = json.loads(_nurture(env, "dispatch", "--json", "--now",
                                 (midnight + timedelta(minutes=1)).isoformat()))
    received = _ids(smtp_server.messages)
    print(f"[limits] the next day: {second}; received {sum(received.values())}, "
          f"distinct {len(received)}")
    assert second["sent"] == 20
    assert len(received) == 50 and set(received.values()) == {1}, "nothing lost, no duplicate"
    assert _welcomes(store) == Counter({"sent": 50})


def _arrival_rate(messages: list[ReceivedMessage]) -> float:
    moments = sorted(message.at for message in messages)
    return (len(moments) - 1) / (moments[-1] - moments[0])


def _paced_groups(env: dict[str, str]) -> list[dict[str, Any]]:
    paced: list[dict[str, Any]] = json.loads(_nurture(env, "status", "--json"))["sending"][
        "destinations_paced"]
    return paced


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_gmail_deferring_slows_gmail_alone_and_is_delivered_once_it_accepts(
        database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
        schedulers_for: Callable[..., Schedulers]) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    count = 400
    group = schedulers_for(smtp_server.port, dirs, NURTURE_RETRY_BASE_SECONDS="1",
                           NURTURE_BATCH_SIZE="200")
    group.start()
    # The baseline: the other domains alone, nothing deferred.
    _enroll(store, dirs, [f"base{index}@example.org" for index in range(count)], utcnow())
    smtp_server.wait_for(count, timeout=90)
    baseline = _arrival_rate(smtp_server.messages)

    smtp_server.faults.defer_domain("gmail.com", "421 4.7.0 Try again later, closing connection.")
    already = len(smtp_server.messages)
    mixed = [email for index in range(count)
             for email in (f"g{index}@gmail.com", f"o{index}@example.org")]
    _enroll(store, dirs, mixed, utcnow())
    smtp_server.wait_for(already + count, timeout=90)
    others = [m for m in smtp_server.messages[already:] if m.recipients[0].endswith("example.org")]
    during = _arrival_rate(others)
    tried_gmail = smtp_server.faults.rcpt_by_domain["gmail.com"]
    wait_until(lambda: any(view["group"] == "gmail" for view in _paced_groups(group.env)), 30,
               "status to show gmail paced")
    (gmail,) = [view for view in _paced_groups(group.env) if view["group"] == "gmail"]

    smtp_server.faults.domain_replies.clear()  # Gmail accepts again
    smtp_server.wait_for(already + 2 * count, timeout=180)
    assert group.stop_all() == [0]
    received = _ids(smtp_server.messages)
    gmail_received = [m for m in smtp_server.messages if m.recipients[0].endswith("gmail.com")]
    print(f"\n[pacing] other domains: {baseline:.0f}/s alone, {during:.0f}/s while gmail.com "
          f"answered 421 4.7.0 (ratio {during / baseline:.2f}); gmail RCPTs tried while deferring "
          f"{tried_gmail} of {count}; status showed {gmail}; afterwards gmail received "
          f"{len(gmail_received)}, duplicates {sum(received.values()) - len(received)}")
    assert len(others) == count, "every other recipient delivered while gmail deferred"
    # What was with the relay when the first deferral came back, and a probe per backoff.
    assert tried_gmail <= SEND_AHEAD_LIMIT + 20
    assert gmail["window"] == 1 and gmail["deferrals"] >= 1
    assert gmail["last_reply"].startswith("4.7.0 Try again later")
    assert len(gmail_received) == count
    assert len(received) == 3 * count and set(received.values()) == {1}
    assert _welcomes(store) == Counter({"sent": 3 * count})
