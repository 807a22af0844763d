"""Content kept in the database, on SQLite and PostgreSQL: versions numbered from 1 with who, when
and why; files stored once however many versions share them; a save from an old version refused,
also when two race; the audit log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from nurture.store.content_snapshots import ContentConflict, SqlContentStore, UnknownVersion
from nurture.store.models import admin_audit_table, content_blob_table

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
FILES = {"sequences/a.yaml": "key: a\n", "templates/emails/a/one.md": "Hello {{ first_name }}\r\n",
         "templates/locales/hi-IN.yaml": "नमस्ते: 1\n"}


def test_versions_record_who_when_why_and_their_files(engine: Engine) -> None:
    store = SqlContentStore(engine)
    assert store.latest() is None and store.latest_number() is None
    first = store.save(FILES, author="ana", note="first", based_on=None, now=T0, action="import")
    edited = {**FILES, "sequences/a.yaml": "key: a\nname: A\n"}
    second = store.save(edited, author="ben", note="a name", based_on=1, now=T0 + timedelta(1))
    assert (first.number, second.number) == (1, 2)
    assert store.files(1) == FILES and store.files(2) == edited
    latest = store.latest()
    assert latest is not None
    assert (latest.number, latest.author, latest.action, latest.note, latest.based_on) == (
        2, "ben", "save", "a name", 1)
    assert latest.saved_at == T0 + timedelta(1)
    assert [v.number for v in store.versions()] == [2, 1]
    # Two versions, four distinct texts: the unchanged files are stored once.
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(content_blob_table)).scalar() == 4
    assert [(e.user, e.action, e.number) for e in store.audit()] == [
        ("ben", "save", 2), ("ana", "import", 1)]
    with pytest.raises(UnknownVersion):
        store.files(3)


def test_a_save_from_an_older_version_is_refused_and_changes_nothing(engine: Engine) -> None:
    store = SqlContentStore(engine)
    store.save(FILES, author="ana", note="", based_on=None, now=T0)
    store.save({**FILES, "sequences/a.yaml": "key: a\n# one\n"}, author="ana", note="",
               based_on=1, now=T0)
    with pytest.raises(ContentConflict) as refused:
        store.save({**FILES, "sequences/a.yaml": "key: a\n# two\n"}, author="ben", note="",
                   based_on=1, now=T0)
    assert (refused.value.based_on, refused.value.latest) == (1, 2)
    assert "version 2 was saved after this edit started from version 1" in str(refused.value)
    assert store.latest_number() == 2 and "# one" in store.files(2)["sequences/a.yaml"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(admin_audit_table)).scalar() == 2


def test_two_saves_racing_from_one_version_let_exactly_one_win(engine: Engine) -> None:
    store = SqlContentStore(engine)
    store.save(FILES, author="ana", note="", based_on=None, now=T0)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def save(index: int) -> None:
        start.wait()
        try:
            store.save({**FILES, "sequences/a.yaml": f"key: a\n# {index}\n"}, author=f"u{index}",
                       note="", based_on=1, now=T0)
            outcomes.append("saved")
        except ContentConflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["saved"]
    assert [v.number for v in store.versions()] == [2, 1]
