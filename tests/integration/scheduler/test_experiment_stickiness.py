"""Arms stay put under faults: two `nurture scheduler` processes on PostgreSQL, one killed with
kill -9 mid-batch and replaced; every copy of every email (a duplicate included) carries the arm
recorded on its delivery, and that arm is the one the HMAC draws from the secret key."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import utcnow
from nurture.config import DEFAULT_SECRET_KEY
from nurture.content.library import load_content
from nurture.engine.assignment import Assigner
from nurture.engine.decisions import message_id_for
from nurture.store.models import Delivery
from nurture.store.sql.store import SqlStore
from tests.support.dispatchers import DOMAIN
from tests.support.experiments import SUBJECTS, welcome_experiment
from tests.support.schedulers import Schedulers, enroll_due, wait_until
from tests.support.smtp import RecordingSmtpServer

# The schedulers' secret key: the default, which also encrypts the answers this test writes.
SECRET = DEFAULT_SECRET_KEY


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_two_schedulers_and_a_kill_9_keep_every_arm(
    database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
    schedulers_for: Callable[..., Schedulers],
) -> None:
    dirs = welcome_experiment(tmp_path / "content")
    content = load_content(*dirs)
    count = 1000
    enroll_due(store, dirs, count, "arm")
    group = schedulers_for(smtp_server.port, dirs, NURTURE_LEASE_SECONDS="10")
    group.start()
    group.start()
    chance = random.Random(17)
    smtp_server.wait_for(chance.randint(150, 400), timeout=60)
    victim = chance.choice(group.running)
    group.kill(victim)
    group.start()

    def welcomes_settled() -> bool:
        with store.engine.connect() as conn:
            return not conn.scalar(select(Delivery.id).where(
                Delivery.step_key == "welcome", Delivery.status.in_(["queued", "deferred"]))
                .limit(1))
    wait_until(welcomes_settled, 90, "the survivors to send every welcome they could")
    assert group.stop_all() == [0, 0]
    later = (utcnow() + timedelta(minutes=2)).isoformat()  # past the dead process's leases
    finish = subprocess.run([sys.executable, "-m", "nurture", "dispatch", "--now", later],
                            env=group.env, cwd=group.workdir, capture_output=True, text=True,
                            timeout=120, check=False)
    assert finish.returncode == 0, finish.stderr

    with store.engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.subscriber_id, Delivery.variant,
                                   Delivery.assigned_by, Delivery.status)
                            .where(Delivery.step_key == "welcome")).all()
    assert len(rows) == count and all(row.assigned_by == "chance" for row in rows)
    assigner, experiment = Assigner(SECRET), content.sequences["sample"].steps[0].experiment
    assert experiment is not None
    assert all(row.variant == assigner.arm(row.subscriber_id, experiment) for row in rows)
    arm_of = {message_id_for(row.id, DOMAIN): row.variant for row in rows}
    copies: dict[str, list[str]] = defaultdict(list)
    for message in smtp_server.messages:
        if str(message.message["Message-ID"]) in arm_of:
            copies[str(message.message["Message-ID"])].append(str(message.message["Subject"]))
    for message_id, subjects in copies.items():
        assert set(subjects) == {SUBJECTS[arm_of[message_id]]}, (message_id, subjects)
    statuses = Counter((row.variant == "holdout", row.status) for row in rows)
    holdouts = statuses[(True, "skipped")]
    duplicates = sum(len(subjects) - 1 for subjects in copies.values())
    print(f"\n[experiments] two schedulers, one kill -9: {count} welcomes, arms "
          f"{dict(Counter(row.variant for row in rows))}, duplicates {duplicates}, "
          f"every copy carried its recorded arm")
    assert statuses == Counter({(True, "skipped"): holdouts, (False, "sent"): count - holdouts})
    assert len(copies) == count - holdouts  # nothing lost; the holdout received nothing
