"""Editing content kept in the database, on SQLite and PostgreSQL: an edit is validated as
`nurture sequences validate` validates files and saved as the next version, or refused whole; a
restore is a new version; import and export move content to and from folders byte for byte; each
process reads the newest version from folders of its own, and picks up a new one on reload."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nurture.content.library import ContentHolder
from nurture.content.snapshots import diff_files, read_files
from nurture.services.content_editing import ContentConflict, ContentEditor, EditRefused
from nurture.services.content_mirror import KEEP_VERSIONS, ContentMirror, import_if_empty
from nurture.store.content_snapshots import SqlContentStore
from tests.support.schedulers import copy_content

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SEQUENCE = "sequences/sample.yaml"
WELCOME = "templates/emails/sample/welcome.md"
OLD_SUBJECT = "are not alone in this"


def _editor(engine: Engine) -> ContentEditor:
    return ContentEditor(SqlContentStore(engine), lambda: T0)


@pytest.fixture
def content_root(tmp_path: Path) -> Path:
    copy_content(tmp_path / "content", all_day=False)
    return tmp_path / "content"


def test_an_edit_is_validated_saved_as_the_next_version_and_restored(
    engine: Engine, content_root: Path,
) -> None:
    editor = _editor(engine)
    first = editor.import_folder(content_root, author="ana")
    assert first is not None and first.number == 1 and first.action == "import"
    assert editor.import_folder(content_root, author="ana") is None, "nothing new to import"

    files = editor.edited(1, SEQUENCE, editor.live().files[SEQUENCE].replace(
        OLD_SUBJECT, "have company in this"))
    saved = editor.save(files, author="ben", note="warmer subject", based_on=1)
    assert saved.number == 2
    [change] = editor.diff(1, 2)
    assert change.path == SEQUENCE and change.change == "changed"
    assert any(line.startswith("+") and "have company in this" in line for line in change.lines)
    assert any(line.startswith("-") and OLD_SUBJECT in line for line in change.lines)

    restored = editor.restore(1, author="ana", based_on=2)
    assert (restored.number, restored.action, restored.note) == (3, "restore", "restored version 1")
    assert editor.store.files(3) == editor.store.files(1)
    assert [(e.user, e.action, e.number) for e in editor.store.audit()] == [
        ("ana", "restore", 3), ("ben", "save", 2), ("ana", "import", 1)]


def test_a_broken_edit_is_refused_with_validates_message_and_saves_nothing(
    engine: Engine, content_root: Path,
) -> None:
    editor = _editor(engine)
    editor.import_folder(content_root, author="ana")
    body = editor.live().files[WELCOME]
    broken = body + "\n\n{% if first_name %}\nAn unclosed block.\n"
    with pytest.raises(EditRefused) as refused:
        editor.save(editor.edited(1, WELCOME, broken), author="ben", note="", based_on=1)
    errors = [p for p in refused.value.problems if p.severity.value == "error"]
    assert errors and all(str(p.path) == WELCOME for p in errors), errors
    assert errors[0].line > 0 and errors[0].fix
    # A layout without its unsubscribe link: the content rules hold for an edit as for a file.
    layout = "templates/layouts/email.html"
    link = '<a href="{{ unsubscribe_url }}">{{ texts.unsubscribe_link }}</a>'
    assert link in editor.live().files[layout]
    stripped = editor.live().files[layout].replace(link, "")
    with pytest.raises(EditRefused) as refused:
        editor.save(editor.edited(1, layout, stripped), author="ben", note="", based_on=1)
    assert any("unsubscribe" in p.message for p in refused.value.problems), refused.value
    assert editor.store.latest_number() == 1


def test_a_save_from_an_old_version_is_refused_even_when_valid(
    engine: Engine, content_root: Path,
) -> None:
    editor = _editor(engine)
    editor.import_folder(content_root, author="ana")
    text = editor.live().files[SEQUENCE]
    editor.save(editor.edited(1, SEQUENCE, text + "# ana\n"), author="ana", note="", based_on=1)
    with pytest.raises(ContentConflict, match="version 2 was saved after"):
        editor.save(editor.edited(1, SEQUENCE, text + "# ben\n"), author="ben", note="",
                    based_on=1)


def test_import_and_export_move_content_byte_for_byte(
    engine: Engine, content_root: Path, tmp_path: Path,
) -> None:
    # Bytes that a careless round trip would change: CRLF, no final newline, Devanagari.
    odd = content_root / "templates" / "emails" / "sample" / "odd.md"
    odd.write_bytes("Line one\r\nनमस्ते, दूसरी पंक्ति".encode())
    editor = _editor(engine)
    editor.import_folder(content_root, author="ana")
    out = tmp_path / "out"
    editor.export_folder(out)
    originals = read_files(content_root)
    for path in originals:
        assert (out / path).read_bytes() == (content_root / path).read_bytes(), path
    # An export into a folder holding a file the version lacks removes it: the folder is the
    # version, so a review in git sees the removal.
    stale = out / "templates" / "emails" / "sample" / "gone.md"
    stale.write_text("old")
    editor.export_folder(out)
    assert not stale.exists() and read_files(out) == originals


def test_each_process_reads_the_newest_version_from_its_own_folders(
    engine: Engine, content_root: Path, tmp_path: Path,
) -> None:
    editor = _editor(engine)
    import_if_empty(editor, content_root / "sequences", content_root / "templates")
    mirror = ContentMirror(editor, tmp_path / "cache")
    holder = ContentHolder(Path("unused"), Path("unused"), sync=mirror.sync)
    assert holder.sequences_dir == tmp_path / "cache" / "v1" / "sequences"
    subject = holder.current.sequences["sample"].steps[0].subject
    assert OLD_SUBJECT in subject
    text = editor.live().files[SEQUENCE].replace(OLD_SUBJECT, "have company in this")
    for number in range(1, KEEP_VERSIONS + 3):
        editor.save(editor.edited(number, SEQUENCE, text + f"# {number}\n"), author="ben",
                    note="", based_on=number)
        assert holder.refresh()
    newest = KEEP_VERSIONS + 3
    assert holder.sequences_dir == tmp_path / "cache" / f"v{newest}" / "sequences"
    assert "have company in this" in holder.current.sequences["sample"].steps[0].subject
    # A few versions behind the newest stay, for a process still sending one of them.
    kept = sorted(int(p.name[1:]) for p in (tmp_path / "cache").glob("v*"))
    assert kept == list(range(newest - KEEP_VERSIONS, newest + 1))
    assert not holder.refresh(), "nothing new"


def test_the_first_start_of_several_processes_imports_once(
    engine: Engine, content_root: Path,
) -> None:
    start = threading.Barrier(4)

    def first_start() -> None:
        start.wait()
        import_if_empty(_editor(engine), content_root / "sequences", content_root / "templates")

    threads = [threading.Thread(target=first_start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = SqlContentStore(engine).versions()
    assert [(v.number, v.author, v.action) for v in versions] == [(1, "system", "import")]
    assert diff_files(SqlContentStore(engine).files(1), read_files(content_root)) == []
