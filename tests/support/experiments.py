"""An experiment run for real on a test database: people enrolled in the sample sequence (whose
`next-steps` step tests two subject lines), sent through the real dispatcher to a real SMTP
server until the tested step went out, and conversions reported by some of them afterwards."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from nurture.content.library import Content, load_content
from nurture.domain.people import Person
from nurture.engine.assignment import Assigner
from nurture.engine.dispatch_run import DispatchReport
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.services.events import record_event
from nurture.setting_values import parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from nurture.store.experiments import declared_winners
from nurture.store.models import Delivery, Subscriber
from nurture.store.sql.store import SqlStore
from tests.support.dispatchers import make_dispatcher
from tests.support.schedulers import copy_content

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EXPERIMENT = "sample-next-steps-subject"
STEP = "next-steps"
SECRET = "experiments-test-secret-key"


@dataclass
class ExperimentRun:
    """A test's experiment: its content, database and clock."""

    engine: Engine
    content: Content
    smtp_url: str
    now: datetime = START

    def dispatch(self, at: datetime) -> DispatchReport:
        """One scheduler pass at `at`, with arms drawn and promoted winners honoured."""
        self.now = at
        transport = SmtpTransport(parse_smtp_url(self.smtp_url), timeout=5)
        try:
            dispatcher = make_dispatcher(SqlStore(self.engine), lambda: self.content, transport)
            dispatcher.assigner = Assigner(SECRET)
            dispatcher.winners = lambda: declared_winners(self.engine)
            return dispatcher.run(at)
        finally:
            transport.close()

    def enroll(self, count: int, at: datetime, *, prefix: str = "person") -> None:
        people = [Person(email=f"{prefix}{index}@example.org", first_name=None, time_zone="UTC",
                         hesitations=frozenset({"stigma"}), discreet=False, locale="en")
                  for index in range(count)]
        enroll(SqlStore(self.engine), self.content, people, "sample",
               ConsentRecord(kind="import", source="test"), at)

    def run_until_tested(self, at: datetime) -> datetime:
        """Dispatch every day from `at` until the tested step has gone out to everyone enrolled
        (it is the sample's third email, five days after the first); the time reached."""
        moment = at
        for _ in range(10):
            self.dispatch(moment)
            moment += timedelta(days=1)
        return moment

    def arms(self) -> dict[uuid.UUID, tuple[str, str | None, datetime | None]]:
        """Subscriber id to (arm, assigned_by, sent_at) on the tested step."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Delivery.subscriber_id, Delivery.variant,
                                       Delivery.assigned_by, Delivery.sent_at)
                                .where(Delivery.step_key == STEP,
                                       Delivery.variant.is_not(None))).all()
        return {row[0]: (str(row[1]), row[2], row[3]) for row in rows}

    def convert(self, rates: Mapping[str, float], *, after: timedelta = timedelta(days=1),
                seed: int = 7, event: str = "consult_booked") -> int:
        """Report `event` for a seeded share of each arm's people, `after` their tested email."""
        chance = random.Random(seed)
        converted = 0
        for subscriber_id, (arm, _, sent_at) in sorted(self.arms().items()):
            moment = sent_at or self.now
            if chance.random() < rates.get(arm, 0.0):
                record_event(self.engine, self.content, subscriber_id, event, source="test",
                             now=moment + after)
                converted += 1
        return converted

    def subscriber_ids(self) -> list[uuid.UUID]:
        with self.engine.connect() as conn:
            return list(conn.scalars(select(Subscriber.id).order_by(Subscriber.email)))


def experiment_content(tmp_path: Path, edit: Callable[[str], str] | None = None) -> Content:
    """The sample content (all-day window), its sequence file changed by `edit` when given."""
    sequences, templates = copy_content(tmp_path / "content", all_day=True)
    if edit is not None:
        path = sequences / "sample.yaml"
        path.write_text(edit(path.read_text()))
    return load_content(sequences, templates)


SUBJECTS = {"a": "You are not alone in this", "b": "A short hello before the first note"}
WELCOME = "    discreet_preheader: A short hello and how to change your settings\n"
TESTED_WELCOME = WELCOME + """    experiment:
      key: welcome-subject
      holdout: 10%
      variants:
        - key: a
          weight: 70
        - key: b
          weight: 30
          subject: A short hello before the first note
"""


def welcome_experiment(target: Path) -> tuple[Path, Path]:
    """The sample content, all day, with the experiment moved to the welcome: due at once."""
    sequences, templates = copy_content(target, all_day=True)
    path = sequences / "sample.yaml"
    text = path.read_text()
    text = text[:text.index("\n    experiment:")] + "\n"
    path.write_text(text.replace(WELCOME, TESTED_WELCOME, 1))
    return sequences, templates
