"""Two `nurture scheduler` processes on PostgreSQL with their content in the database and no
content file on their host: each sends the version saved last, and takes up a version saved while
they run (as the admin editor saves it) at their next reload, without a restart or a signal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import utcnow
from nurture.content.library import load_content
from nurture.content.snapshots import write_files
from nurture.services.content_editing import ContentEditor
from nurture.store.content_snapshots import SqlContentStore
from nurture.store.models import scheduler_heartbeat_table
from nurture.store.sql.store import SqlStore
from tests.support.schedulers import Schedulers, copy_content, enroll_due, wait_until
from tests.support.smtp import RecordingSmtpServer

OLD, NEW = "are not alone in this", "have company in this"


def _subjects(server: RecordingSmtpServer, prefix: str) -> set[str]:
    return {str(m.message["Subject"]) for m in server.messages
            if m.recipients[0].startswith(prefix)}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_two_schedulers_send_the_version_saved_in_the_database(
    database_url: str, store: SqlStore, smtp_server: RecordingSmtpServer, tmp_path: Path,
    schedulers_for: Callable[..., Schedulers],
) -> None:
    dirs = copy_content(tmp_path / "content", all_day=True)
    editor = ContentEditor(SqlContentStore(store.engine), utcnow)
    assert editor.import_folder(tmp_path / "content", author="ana") is not None
    nowhere = (tmp_path / "no-such-folder" / "sequences", tmp_path / "no-such-folder" / "templates")
    groups = [schedulers_for(smtp_server.port, nowhere, NURTURE_CONTENT_SOURCE="database",
                             NURTURE_CONTENT_CACHE_DIR=str(tmp_path / f"host-{host}"))
              for host in ("a", "b")]
    for group in groups:
        group.start()

    enroll_due(store, dirs, 20, "before")
    smtp_server.wait_for(20, timeout=60)
    assert _subjects(smtp_server, "before") == {f"You {OLD}"}

    text = editor.live().files["sequences/sample.yaml"].replace(OLD, NEW)
    saved = editor.save(editor.edited(1, "sequences/sample.yaml", text), author="ana",
                        note="a warmer subject", based_on=1)
    new_version = load_content(*write_files(editor.store.files(saved.number),
                                            tmp_path / "check")).version

    def both_on_the_new_version() -> bool:
        with store.engine.connect() as conn:
            versions = conn.execute(select(scheduler_heartbeat_table.c.content_version)).scalars()
            return set(versions) == {new_version}

    # Their reload runs every 10 s; nothing is signalled or restarted.
    wait_until(both_on_the_new_version, 40, "both schedulers to load version 2")
    enroll_due(store, dirs, 20, "after")
    smtp_server.wait_for(40, timeout=60)
    assert _subjects(smtp_server, "after") == {f"You {NEW}"}
    assert [code for group in groups for code in group.stop_all()] == [0, 0]
    assert sorted(path.name for path in (tmp_path / "host-a").iterdir()) == ["v1", "v2"]
    assert not (tmp_path / "no-such-folder").exists()
