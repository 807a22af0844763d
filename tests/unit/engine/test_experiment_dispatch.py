"""Arms in the dispatcher, on the in-memory store: recorded at the first claim and kept through a
retry, a content reload that changes the weights and a restart; a removed variant's people get
the step as written; someone assigned in an earlier enrollment keeps their arm."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from nurture.content.library import Content, load_content
from nurture.domain.people import make_person
from nurture.engine.assignment import Assigner
from nurture.engine.enrollment import enroll
from nurture.engine.ports import (
    AssignedBy,
    Assignment,
    ClaimedDelivery,
    ConsentRecord,
    OutgoingMessage,
    SendErrorKind,
    SendResult,
)
from nurture.engine.throttle import Throttle
from nurture.store.memory.store import MemoryStore
from tests.support.clock import T0
from tests.support.dispatchers import make_dispatcher
from tests.support.experiments import SUBJECTS, welcome_experiment

SECRET = "dispatch-test-secret-key"


class Relay:
    """Answers 451 to every message while `deferring`, else 250; notes subject by recipient."""

    def __init__(self) -> None:
        self.deferring = False
        self.subjects: dict[str, list[str]] = {}

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.deferring:
            return SendResult(False, 451, "try later", SendErrorKind.TEMPORARY)
        subject = next(line for line in message.wire().decode().splitlines()
                       if line.startswith("Subject: "))[len("Subject: "):]
        self.subjects.setdefault(message.recipients[0], []).append(subject)
        return SendResult(True, 250, "ok")

    def close(self) -> None:
        pass


def _run(store: MemoryStore, content: Callable[[], Content], relay: Relay, at: timedelta) -> None:
    # A new dispatcher each time (a restart); no breaker, so every row meets the 451.
    dispatcher = make_dispatcher(store, content, relay, throttle=Throttle())
    dispatcher.assigner = Assigner(SECRET)
    dispatcher.run(T0 + at)


def _arms(store: MemoryStore, emails: list[str]) -> dict[str, str | None]:
    return {email: next(d for d in store.deliveries_for(email) if d.step_key == "welcome").variant
            for email in emails}


def _claimed_and_deferred(tmp_path: Path, count: int
                          ) -> tuple[Path, Content, MemoryStore, Relay, list[str]]:
    """`count` people whose tested welcome was claimed (arms drawn) and deferred by a 451: the
    sequence file to edit, the content, the store, the relay and the addresses."""
    sequences, templates = welcome_experiment(tmp_path)
    content = load_content(sequences, templates)
    store, relay = MemoryStore(), Relay()
    emails = [f"p{i}@example.org" for i in range(count)]
    people = [make_person(email, time_zone="UTC") for email in emails]
    enroll(store, content, people, "sample", ConsentRecord(kind="operator", source="t"), T0)
    relay.deferring = True
    _run(store, lambda: content, relay, timedelta(0))
    relay.deferring = False
    return sequences / "sample.yaml", content, store, relay, emails


def test_arms_hold_through_a_retry_a_reload_with_new_weights_and_a_restart(tmp_path: Path) -> None:
    path, content, store, relay, emails = _claimed_and_deferred(tmp_path, 300)
    first = _arms(store, emails)
    assert Counter(first.values()).keys() == {"a", "b", "holdout"}

    path.write_text(path.read_text().replace("weight: 70", "weight: 1").replace("weight: 30", "weight: 99"))
    reloaded = load_content(path.parent, content.library.templates_dir)
    assert reloaded.version != content.version
    _run(store, lambda: reloaded, relay, timedelta(hours=2))
    assert _arms(store, emails) == first
    for email, arm in first.items():
        assert relay.subjects.get(email, []) == ([] if arm == "holdout" else [SUBJECTS[str(arm)]])

    late = [f"later{i}@example.org" for i in range(100)]
    later = [make_person(email, time_zone="UTC") for email in late]
    enroll(store, reloaded, later, "sample", ConsentRecord(kind="operator", source="t"),
           T0 + timedelta(hours=2))
    _run(store, lambda: reloaded, relay, timedelta(hours=3))
    new = Counter(_arms(store, late).values())
    assert new["b"] > 75 > new["a"]  # the new weights apply to people not yet assigned


def test_a_removed_variant_sends_its_people_the_step_as_written(tmp_path: Path) -> None:
    path, content, store, relay, emails = _claimed_and_deferred(tmp_path, 60)
    path.write_text(path.read_text().replace("- key: b", "- key: c"))
    edited = load_content(path.parent, content.library.templates_dir)
    _run(store, lambda: edited, relay, timedelta(hours=2))
    arms = _arms(store, emails)
    assert "b" in arms.values()
    for email, arm in arms.items():
        if arm == "b":  # recorded as b still; sent as the step's own subject
            assert relay.subjects[email] == [SUBJECTS["a"]]


def test_an_earlier_arm_of_the_same_experiment_is_kept(tmp_path: Path) -> None:
    content = load_content(*welcome_experiment(tmp_path))
    store = MemoryStore()
    enroll(store, content, [make_person("p@example.org", time_zone="UTC")], "sample",
           ConsentRecord(kind="operator", source="t"), T0)
    (claim,) = store.claim_due(now=T0, owner="o", limit=10, lease=timedelta(minutes=5))
    assert claim.assignment is None
    experiment = content.sequences["sample"].steps[0].experiment
    assert experiment is not None
    drawn = Assigner(SECRET).arm(claim.subscriber.id, experiment)
    other = "b" if drawn != "b" else "a"
    earlier: ClaimedDelivery = ClaimedDelivery(**{**claim.__dict__, "earlier_arms": {experiment.key: other}})
    chosen = Assigner(SECRET).for_claims(content, {})([earlier])
    assert (chosen[claim.id].arm, chosen[claim.id].by) == (other, AssignedBy.EARLIER)
    # A declared winner is promoted only with `promote: auto`; this experiment draws by chance.
    manual = Assigner(SECRET).for_claims(content, {experiment.key: other})([claim])
    assert manual == {claim.id: Assignment(experiment.key, drawn, AssignedBy.CHANCE)}
