"""Two relays named in a relays file, with real `nurture scheduler` processes on PostgreSQL: relay A
is down from the start, so everything goes through B, once, and each delivery records B."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.store.models import Delivery
from nurture.store.sql.store import SqlStore
from tests.support.ports import free_port
from tests.support.schedulers import Schedulers, copy_content, enroll_due, relays_file, wait_until
from tests.support.smtp import RecordingSmtpServer


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_relay_a_down_from_the_start_everything_goes_through_b(
    database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
    schedulers_for: Callable[..., Schedulers],
) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    count = 600
    enroll_due(store, dirs, count, "relay")
    relays = relays_file(tmp_path / "relays.yaml", a=f"smtp://127.0.0.1:{free_port()}",
                         b=smtp_server.url)
    group = schedulers_for(smtp_server.port, dirs, NURTURE_RELAYS_FILE=str(relays))
    group.start()
    group.start()
    smtp_server.wait_for(count, timeout=90)

    def all_sent() -> bool:
        with store.engine.connect() as conn:
            return conn.scalar(select(func.count()).where(Delivery.step_key == "welcome",
                                                          Delivery.status == "sent")) == count
    wait_until(all_sent, 30, "every welcome recorded as sent")
    assert group.stop_all() == [0, 0]
    with store.engine.connect() as conn:
        relays_used = Counter(conn.scalars(select(Delivery.relay)
                                           .where(Delivery.step_key == "welcome")))
    received = Counter(str(m.message["Message-ID"]) for m in smtp_server.messages)
    print(f"\n[relays] two schedulers, relay A down from the start: {count} welcomes, B received "
          f"{sum(received.values())}, duplicates {sum(received.values()) - len(received)}, "
          f"recorded relays {dict(relays_used)}")
    assert len(received) == count and set(received.values()) == {1}
    assert relays_used == Counter({"b": count})
    status = subprocess.run([sys.executable, "-m", "nurture", "status", "--json"], env=group.env,
                            cwd=group.workdir, capture_output=True, text=True, timeout=60,
                            check=True)
    assert json.loads(status.stdout)["relays_last_24h"] == {"b": {"sent": count}}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_relay_a_dies_mid_run_and_b_takes_over_at_once(
    database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
    schedulers_for: Callable[..., Schedulers],
) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    count = 3000
    enroll_due(store, dirs, count, "relay")
    with RecordingSmtpServer() as backup:
        relays = relays_file(tmp_path / "relays.yaml", a=smtp_server.url, b=backup.url)
        group = schedulers_for(smtp_server.port, dirs, NURTURE_RELAYS_FILE=str(relays))
        group.start()
        group.start()
        smtp_server.wait_for(800, timeout=90)
        smtp_server.stop()
        stopped = time.monotonic()
        backup.wait_for(1, timeout=30)
        takeover = time.monotonic() - stopped

        def all_sent() -> bool:
            with store.engine.connect() as conn:
                return conn.scalar(select(func.count()).where(
                    Delivery.step_key == "welcome", Delivery.status == "sent")) == count
        wait_until(all_sent, 120, "every welcome recorded as sent")
        assert group.stop_all() == [0, 0]
        received = Counter(str(m.message["Message-ID"]) for m in smtp_server.messages) + \
            Counter(str(m.message["Message-ID"]) for m in backup.messages)
        with store.engine.connect() as conn:
            relays_used = Counter(conn.scalars(select(Delivery.relay)
                                               .where(Delivery.step_key == "welcome")))
    duplicates = sum(received.values()) - len(received)
    print(f"\n[relays] relay A stopped after {len(smtp_server.messages)} of {count}: B's first "
          f"message {takeover:.2f} s later; lost {count - len(received)}, duplicates "
          f"{duplicates}; recorded relays {dict(relays_used)}")
    assert len(received) == count, "nothing lost"
    assert takeover < 1.0, "B takes over within a second"
    # What each of the two processes had handed to A and not heard back about, at most.
    assert duplicates <= 2 * 64
    assert set(relays_used) == {"a", "b"} and sum(relays_used.values()) == count


def busiest_second(arrivals: list[float]) -> int:
    """The most messages in any one-second stretch (sliding, at each arrival)."""
    arrivals = sorted(arrivals)
    most, start = 0, 0
    for end, moment in enumerate(arrivals):
        while arrivals[start] <= moment - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_three_schedulers_share_one_limit_of_50_a_second(
    database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
    schedulers_for: Callable[..., Schedulers],
) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    count = 1650  # 33 s at 50 a second: the middle 30 s are measured
    enroll_due(store, dirs, count, "paced")
    group = schedulers_for(smtp_server.port, dirs, NURTURE_RATE_PER_SECOND="50")
    for _ in range(3):
        group.start()
    smtp_server.wait_for(count, timeout=120)
    assert group.stop_all() == [0, 0, 0]
    arrivals = sorted(message.at for message in smtp_server.messages)
    first = arrivals[0]
    window = [moment for moment in arrivals if first + 1.5 <= moment < first + 31.5]
    average = len(window) / 30
    per_process = group.sent_by_each()
    print(f"\n[relays] three schedulers, 50/s for the deployment: busiest second "
          f"{busiest_second(arrivals)}, average over 30 s {average:.1f}/s, sent per process "
          f"{per_process}")
    # The limit itself holds to 52 in any second when the tokens are taken
    # (tests/integration/store/test_shared_rate.py); at the relay, arrivals bunch up by what the
    # machine delays (here one loaded test server reads three connections), so the second-long
    # figure is printed, and the rate over the whole run is what is held to.
    # The upper end is the limit; the lower one only that the three keep sending near it (a
    # loaded machine slows the schedulers themselves, and a wrong wait gives a few a second).
    assert 35 <= average <= 50.5
    assert all(sent > 0 for sent in per_process), "every process sent its part"
