"""Content edited while people are mid-sequence: steps follow keys, bad edits are refused whole."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.setting_values import parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from nurture.store.content_versions import content_versions, record_content_version
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.dispatchers import make_dispatcher
from tests.support.paths import ROOT

EXTRA_STEP = """
  - key: extra
    delay: 1d
    template: sample/next-steps.md
    subject: One more note
    discreet_subject: One more note for you
"""


@pytest.fixture
def content_dirs(tmp_path: Path) -> tuple[Path, Path]:
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, sequences / name)
    return sequences, ROOT / "templates"


@pytest.fixture
def holder(content_dirs: tuple[Path, Path]) -> ContentHolder:
    return ContentHolder(*content_dirs, rules=True)


@pytest.fixture
def dispatcher(store: SqlStore, holder: ContentHolder, smtp_server: Any) -> Dispatcher:
    return make_dispatcher(store, holder, SmtpTransport(parse_smtp_url(smtp_server.url), timeout=5),
                           owner="test")


def _edit(holder: ContentHolder, change: Callable[[str], str]) -> bool:
    path = holder.sequences_dir / "sample.yaml"
    path.write_text(change(path.read_text()))
    return holder.reload_if_changed()


def _enroll(store: SqlStore, holder: ContentHolder, email: str) -> None:
    person = make_person(email, "Asha", "Europe/London", ["stigma"])
    enroll(store, holder.current, [person], "sample", ConsentRecord(kind="operator", source="t"), T0)


def _subjects(smtp_server: Any) -> list[str]:
    return [m.message["Subject"] for m in smtp_server.messages]


def test_a_step_added_after_the_position_reaches_people_mid_sequence(
        store: SqlStore, holder: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    _enroll(store, holder, "a@example.org")
    dispatcher.run(T0)
    assert _edit(holder, lambda text: text + EXTRA_STEP)
    for days in (2, 5, 6):
        dispatcher.run(T0 + timedelta(days=days))
    assert _subjects(smtp_server)[-1] == "One more note"
    assert len(smtp_server.messages) == 4


def test_a_removed_step_is_skipped_and_the_next_one_follows(
        store: SqlStore, holder: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    _enroll(store, holder, "b@example.org")
    dispatcher.run(T0)  # welcome sent, understanding queued for T0+2d
    start = (holder.sequences_dir / "sample.yaml").read_text().index("  - key: understanding")
    end = (holder.sequences_dir / "sample.yaml").read_text().index("  - key: next-steps")
    assert _edit(holder, lambda text: text[:start] + text[end:])
    report = dispatcher.run(T0 + timedelta(days=2))
    assert report.sent == 0 and report.skipped == 1
    # The removed step's slot still counts: next-steps is due three days after it.
    assert dispatcher.run(T0 + timedelta(days=5) - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(T0 + timedelta(days=5)).sent == 1
    assert _subjects(smtp_server) == ["Asha, you are not alone in this",
                                      "One small step you can take this week"]
    removed = [d for d in store.deliveries_for("b@example.org") if d.step_key == "understanding"]
    assert removed[0].status.value == "skipped"


def test_reordered_steps_are_followed_in_the_new_order(
        store: SqlStore, holder: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    text = (holder.sequences_dir / "sample.yaml").read_text()
    head, rest = text.split("  - key: welcome", 1)
    welcome, rest = rest.split("  - key: understanding", 1)
    understanding, next_steps = rest.split("  - key: next-steps", 1)
    swapped = (head + "  - key: welcome" + welcome + "  - key: next-steps" + next_steps.rstrip("\n")
               + "\n\n  - key: understanding" + understanding.rstrip("\n") + "\n")
    (holder.sequences_dir / "sample.yaml").write_text(swapped)
    assert holder.reload_if_changed()
    _enroll(store, holder, "c@example.org")
    for days in (0, 3, 5):
        dispatcher.run(T0 + timedelta(days=days))
    assert _subjects(smtp_server) == ["Asha, you are not alone in this",
                                      "One small step you can take this week",
                                      "Why asking for help can feel risky to them"]


def test_a_changed_delay_applies_to_steps_not_yet_queued(
        store: SqlStore, holder: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    _enroll(store, holder, "d@example.org")
    dispatcher.run(T0)
    assert _edit(holder, lambda text: text.replace("delay: 2d", "delay: 4d")
                 .replace("delay: 3d", "delay: 1d"))
    # understanding was already queued with the old delay: it keeps its time.
    assert dispatcher.run(T0 + timedelta(days=2)).sent == 1
    # next-steps is planned after that send, with the new one-day delay.
    assert dispatcher.run(T0 + timedelta(days=3) - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(T0 + timedelta(days=3)).sent == 1


def test_an_edit_that_fails_validation_is_refused_whole(
        store: SqlStore, holder: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    version = holder.current.version
    _enroll(store, holder, "e@example.org")
    # Two edits at once: a harmless new subject and a broken delay. Neither may apply.
    assert not _edit(holder, lambda text: text.replace(
        "One small step you can take this week", "A changed subject").replace(
        "delay: 2d", "delay: soon"))
    assert holder.current.version == version
    assert holder.last_refused is not None
    assert any("'soon' is not a delay" in str(p) and "sample.yaml:" in str(p)
               for p in holder.last_refused.problems)
    for days in (0, 2, 5):
        dispatcher.run(T0 + timedelta(days=days))
    assert _subjects(smtp_server)[-1] == "One small step you can take this week"


def test_a_live_edit_that_breaks_a_content_rule_is_refused(holder: ContentHolder) -> None:
    version = holder.current.version
    assert not _edit(holder, lambda text: text.replace(
        "discreet_subject: Another note for you", "discreet_subject: A note about couples therapy"))
    assert holder.current.version == version
    assert holder.last_refused is not None
    assert any("therapy" in str(p) or "couples" in str(p) for p in holder.last_refused.problems)


def test_each_loaded_version_is_recorded(store: SqlStore, holder: ContentHolder) -> None:
    first = holder.current
    assert record_content_version(store.engine, first.version, first.files, T0)
    assert not record_content_version(store.engine, first.version, first.files, T0)
    assert _edit(holder, lambda text: text + EXTRA_STEP)
    second = holder.current
    record_content_version(store.engine, second.version, second.files, T0 + timedelta(hours=1))
    versions = content_versions(store.engine)
    assert [v[0] for v in versions] == [first.version, second.version]
    assert any(name.endswith("sample.yaml") for name in versions[1][2])
