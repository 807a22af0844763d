"""The in-browser content editor over HTTP on SQLite and PostgreSQL: roles, CSRF, checks that refuse
a broken edit, saves that make the next version, two editors racing, restores, diffs and previews."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from nurture.content.snapshots import diff_files, read_files
from nurture.store.content_snapshots import SqlContentStore
from nurture.web.admin.previews import PREVIEW_CSP
from nurture.web.security import CONTENT_SECURITY_POLICY
from tests.support.admin import FAST_HASHER, PASSWORD, AdminWeb, build_admin_web, sign_in
from tests.support.paths import ROOT
from tests.support.web import Browser, csrf_of

BOSS, EDITOR, OTHER_EDITOR, VIEWER = "boss", "marketer", "copywriter", "intern"
SEQUENCE = "sequences/sample.yaml"
TEMPLATE = "templates/emails/sample/welcome.md"
OLD_SUBJECT = "subject: Why asking for help can feel risky to them"
NEW_SUBJECT = "subject: Why asking for help can feel hard for them"
SHIPPED_ELSEWHERE = ("partner-hesitant", "preparing-together", "starting-solo")


def sample_content() -> dict[str, str]:
    """The sample and system sequences with their templates, layouts and locales: what the web
    tests use, and checked in about a second (the whole shipped content takes several)."""
    files = {path: text for path, text in read_files(ROOT).items()
             if path in ("sequences/sample.yaml", "sequences/system.yaml")
             or (path.startswith("templates/")
                 and not any(path.startswith(f"templates/emails/{name}/")
                             for name in SHIPPED_ELSEWHERE))}
    files["sequences/selection.yaml"] = "default: sample\n"
    return files


@dataclass
class EditorWeb:
    web: AdminWeb
    store: SqlContentStore

    def browser(self, name: str) -> Browser:
        browser = self.web.browser()
        assert sign_in(browser, name=name).status_code == 303
        return browser

    def numbers(self) -> list[int]:
        return [version.number for version in self.store.versions()]


def build(database_url: str, engine: Engine, tmp_path: Path, *, source: str) -> AdminWeb:
    hashed = FAST_HASHER.hash(PASSWORD)
    return build_admin_web(
        database_url, engine, tmp_path, None, content_source=source,
        admin_users=tuple((name, hashed) for name in (BOSS, EDITOR, OTHER_EDITOR, VIEWER)),
        admin_roles=((BOSS, "admin"), (EDITOR, "editor"), (OTHER_EDITOR, "editor")))


@pytest.fixture
def editing(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[EditorWeb]:
    web = build(database_url, engine, tmp_path, source="database")
    assert web.runtime is not None
    store = web.runtime.content_editor().store
    # Straight into the store: the import's own check is tested with the ContentEditor.
    store.save(sample_content(), author="test", note="imported", based_on=None, now=web.clock(),
               action="import")
    yield EditorWeb(web, store)
    web.close()


def edit_form(browser: Browser, path: str) -> dict[str, str]:
    page = browser.get(f"/admin/content/edit?path={path}")
    assert page.status_code == 200, page.text
    text = re.search(r'<textarea id="text"[^>]*>\n(.*?)</textarea>', page.text, re.S)
    based_on = re.search(r'name="based_on" value="(\d+)"', page.text)
    assert text and based_on
    return {"csrf_token": csrf_of(page), "path": path, "based_on": based_on.group(1),
            "text": unescape(text.group(1))}


def post(browser: Browser, url: str, form: dict[str, str], **changes: Any) -> httpx.Response:
    fields = {**form, **changes}
    # As the page's form and its script send them: multipart, so long non-Latin text stays small.
    return browser.post(url, files={name: (None, value) for name, value in fields.items()})


def test_viewers_read_editors_save_admins_see_audit_and_users(editing: EditorWeb) -> None:
    viewer = editing.browser(VIEWER)
    listing = viewer.get("/admin/content")
    assert listing.status_code == 200 and "Live version" in listing.text
    assert f'href="/admin/content/edit?path={SEQUENCE.replace("/", "%2F")}"' in listing.text
    assert "Saving changes needs the editor role" in listing.text
    assert 'href="/admin/audit"' not in listing.text, "no admin links for a viewer"
    form = edit_form(viewer, SEQUENCE)
    page = viewer.get(f"/admin/content/edit?path={SEQUENCE}")
    assert " readonly" in page.text and "Save as a new version" not in page.text
    for url in ("/admin/content/save", "/admin/content/check", "/admin/content/preview"):
        refused = post(viewer, url, form, text=form["text"].replace(OLD_SUBJECT, NEW_SUBJECT))
        assert refused.status_code == 403 and "editor role" in refused.text, url
    assert post(viewer, "/admin/content/history/1/restore", form).status_code == 403
    for url in ("/admin/audit", "/admin/users"):
        assert viewer.get(url).status_code == 403
        assert editing.browser(EDITOR).get(url).status_code == 403
    assert editing.numbers() == [1]

    editor = editing.browser(EDITOR)
    saved = post(editor, "/admin/content/save", edit_form(editor, SEQUENCE),
                 text=form["text"].replace(OLD_SUBJECT, NEW_SUBJECT))
    assert saved.status_code == 303
    assert editing.numbers() == [2, 1]

    boss = editing.browser(BOSS)
    audit = boss.get("/admin/audit")
    assert audit.status_code == 200 and 'href="/admin/users"' in audit.text
    assert re.search(rf"<td>{EDITOR}</td><td>save</td>", audit.text)
    users = boss.get("/admin/users")
    assert users.status_code == 200
    for name, role in ((BOSS, "admin"), (EDITOR, "editor"), (VIEWER, "viewer")):
        assert re.search(rf"<th scope=\"row\">{name}</th><td>{role}</td>", users.text)
    assert "$argon2" not in users.text, "never the password hashes"


def test_every_change_needs_its_csrf_field(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, SEQUENCE)
    changed = form["text"].replace(OLD_SUBJECT, NEW_SUBJECT)
    for url in ("/admin/content/save", "/admin/content/check", "/admin/content/preview",
                "/admin/content/history/1/restore"):
        for token in ("", "0" * 64):
            refused = post(editor, url, form, csrf_token=token, text=changed)
            assert refused.status_code == 403 and "Please try again" in refused.text, url
    assert editing.numbers() == [1]


def test_a_broken_edit_shows_its_errors_and_saves_nothing(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, TEMPLATE)
    lines = form["text"].split("\n")
    broken_line = len(lines) - 1
    lines[broken_line - 1] += " {% if first_name %}never closed <b>"
    broken = "\n".join(lines)

    checked = post(editor, "/admin/content/check", form, text=broken)
    assert checked.status_code == 200
    answer = checked.json()
    assert answer["errors"] >= 1
    first = answer["problems"][0]
    assert first["file"] == TEMPLATE and first["here"] and first["severity"] == "error"
    assert first["line"] > 0 and first["message"] and "fix" in first

    refused = post(editor, "/admin/content/save", form, text=broken, note="oops")
    assert refused.status_code == 422
    assert "Nothing was saved" in refused.text
    assert f'data-line="{first["line"]}">Line {first["line"]}</button>' in refused.text
    assert "never closed &lt;b&gt;" in refused.text, "the text is kept, escaped"
    assert editing.numbers() == [1]
    assert editing.store.files(1)[TEMPLATE] == form["text"]

    clean = post(editor, "/admin/content/check", form, text=form["text"]).json()
    assert clean["errors"] == 0


def test_a_valid_edit_makes_the_next_version_changing_only_that_file(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, SEQUENCE)
    # A browser sends the textarea with CRLF line ends; the file keeps its own.
    changed = form["text"].replace(OLD_SUBJECT, NEW_SUBJECT).replace("\n", "\r\n")
    saved = post(editor, "/admin/content/save", form, text=changed, note="  softer subject ")
    assert saved.status_code == 303
    assert saved.headers["location"] == "/admin/content/history?saved=2#version-2"
    assert editing.numbers() == [2, 1]
    (diff,) = diff_files(editing.store.files(1), editing.store.files(2))
    assert diff.path == SEQUENCE and diff.change == "changed"
    assert [line for line in diff.lines if line[:1] in "+-"] == [
        f"-    {OLD_SUBJECT}", f"+    {NEW_SUBJECT}"]
    version = editing.store.version(2)
    assert (version.author, version.action, version.note, version.based_on) == (
        EDITOR, "save", "softer subject", 1)

    history = editor.get(saved.headers["location"])
    assert history.status_code == 200
    assert "Saved as version 2" in history.text
    assert 'id="version-2" class="is-current"' in history.text
    assert history.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_second_of_two_saves_from_one_version_gets_a_conflict(editing: EditorWeb) -> None:
    first, second = editing.browser(EDITOR), editing.browser(OTHER_EDITOR)
    first_form, second_form = edit_form(first, SEQUENCE), edit_form(second, SEQUENCE)
    assert post(first, "/admin/content/save", first_form,
                text=first_form["text"].replace(OLD_SUBJECT, NEW_SUBJECT)).status_code == 303
    mine = second_form["text"].replace("Starting on your own is a real option",
                                       "Starting alone is a real option")
    late = post(second, "/admin/content/save", second_form, text=mine)
    assert late.status_code == 409
    assert "Someone saved a newer version while you were editing" in late.text
    assert "They changed this file too" in late.text
    assert "Removed: </span>-    " + OLD_SUBJECT in unescape(late.text)
    assert "Added: </span>+    " + NEW_SUBJECT in unescape(late.text)
    assert "Starting alone is a real option" in late.text, "their text is kept"
    assert 'name="based_on" value="2"' in late.text
    assert editing.numbers() == [2, 1]


def test_two_saves_racing_from_one_version_make_one_version(editing: EditorWeb) -> None:
    browsers = [editing.browser(EDITOR), editing.browser(OTHER_EDITOR)]
    forms = [edit_form(browser, SEQUENCE) for browser in browsers]
    texts = [forms[0]["text"].replace(OLD_SUBJECT, NEW_SUBJECT),
             forms[1]["text"].replace("Starting on your own", "Starting alone")]
    start = threading.Barrier(2)
    statuses: list[int] = [0, 0]

    def save(index: int) -> None:
        start.wait()
        statuses[index] = post(browsers[index], "/admin/content/save", forms[index],
                               text=texts[index]).status_code

    threads = [threading.Thread(target=save, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [303, 409]
    assert editing.numbers() == [2, 1]
    winner = statuses.index(303)
    assert editing.store.files(2)[SEQUENCE] == texts[winner]


def test_restore_makes_a_new_version_equal_to_the_old_one(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, SEQUENCE)
    assert post(editor, "/admin/content/save", form,
                text=form["text"].replace(OLD_SUBJECT, NEW_SUBJECT)).status_code == 303
    history = editor.get("/admin/content/history")
    assert 'action="/admin/content/history/1/restore"' in history.text
    assert 'action="/admin/content/history/2/restore"' not in history.text, "2 is live"

    stale = post(editor, "/admin/content/history/1/restore", {"csrf_token": csrf_of(history)},
                 based_on="1")
    assert stale.status_code == 409 and "Restore version 1 anyway" in stale.text
    assert editing.numbers() == [2, 1]

    restored = post(editor, "/admin/content/history/1/restore", {"csrf_token": csrf_of(history)},
                    based_on="2")
    assert restored.status_code == 303
    assert restored.headers["location"] == "/admin/content/history?saved=3#version-3"
    assert editing.numbers() == [3, 2, 1]
    assert editing.store.files(3) == editing.store.files(1)
    version = editing.store.version(3)
    assert (version.action, version.note, version.author) == ("restore", "restored version 1",
                                                              EDITOR)


def test_the_diff_page_marks_lines_and_escapes_html(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, SEQUENCE)
    hostile = '# <script>alert("diff")</script> & <img src=x onerror=alert(1)>\n'
    assert post(editor, "/admin/content/save", form,
                text=hostile + form["text"]).status_code == 303
    page = editor.get("/admin/content/diff?old=1&new=2")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert ('<span class="diff-added"><span class="visually-hidden">Added: </span>+# '
            "&lt;script&gt;alert(&#34;diff&#34;)&lt;/script&gt; &amp; &lt;img src=x "
            "onerror=alert(1)&gt;</span>") in page.text
    assert f"<code>{SEQUENCE}</code>" in page.text
    assert editor.get("/admin/content/diff?old=1&new=9").status_code == 404
    assert editor.get("/admin/content/diff?old=x&new=2").status_code == 422


def test_the_preview_shows_the_draft_sandboxed_to_its_author(editing: EditorWeb) -> None:
    editor = editing.browser(EDITOR)
    form = edit_form(editor, TEMPLATE)
    page = editor.get(f"/admin/content/edit?path={TEMPLATE}")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<option value="sample|welcome|en" selected>' in page.text, "the step using it"
    assert '<script src="/static/editor.js" defer></script>' in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "no inline script"
    assert " style=" not in page.text, "no inline style"
    src = re.search(r'<iframe sandbox id="preview-frame"[^>]* src="([^"]+)"', page.text)
    assert src and editor.get(unescape(src.group(1))).status_code == 200

    draft = post(editor, "/admin/content/preview", form,
                 text=form["text"] + "\nA line only in the draft.\n")
    assert draft.status_code == 200
    url = f"{draft.json()['src']}?sequence=sample&step=welcome&locale=en"
    shown = editor.get(url)
    assert shown.status_code == 200 and "A line only in the draft." in shown.text
    assert shown.headers["content-security-policy"] == PREVIEW_CSP
    assert editing.browser(OTHER_EDITOR).get(url).status_code == 404, "only its author sees it"
    assert editing.web.browser().get(url).status_code == 401
    assert editor.get(url.replace("step=welcome", "step=nope")).status_code == 404
    assert editing.numbers() == [1], "a preview saves nothing"

    hindi = editor.get("/admin/content/edit?path=templates/emails/sample/hi-IN/welcome.md")
    assert '<option value="sample|welcome|hi-IN" selected>' in hindi.text
    frame = re.search(r'<iframe sandbox id="preview-frame"[^>]* src="([^"]+)"', hindi.text)
    assert frame and "नमस्ते" in editor.get(unescape(frame.group(1))).text


def test_with_content_in_files_the_pages_say_how_to_turn_editing_on(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    web = build(database_url, engine, tmp_path, source="files")
    try:
        browser = web.browser()
        assert sign_in(browser, name=EDITOR).status_code == 303
        page = browser.get("/admin/content")
        assert page.status_code == 200
        assert "NURTURE_CONTENT_SOURCE=database" in page.text
        assert "nurture content import" in page.text
        assert "/admin/content/edit" not in page.text
        for url in (f"/admin/content/edit?path={SEQUENCE}", "/admin/content/history"):
            off = browser.get(url)
            assert off.status_code == 409 and "NURTURE_CONTENT_SOURCE=database" in off.text
    finally:
        web.close()


def test_the_new_pages_run_under_the_site_csp_with_no_inline_code(editing: EditorWeb) -> None:
    boss = editing.browser(BOSS)
    form = edit_form(boss, SEQUENCE)
    assert post(boss, "/admin/content/save", form,
                text=form["text"].replace(OLD_SUBJECT, NEW_SUBJECT)).status_code == 303
    for url in ("/admin/content", f"/admin/content/edit?path={SEQUENCE}", "/admin/content/history",
                "/admin/content/diff?old=1&new=2", "/admin/audit", "/admin/users"):
        page = boss.get(url)
        assert page.status_code == 200, url
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", page.text), url
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), url
        for nav in ("Content", "History", "Audit", "Users"):
            assert f">{nav}</a></li>" in page.text, (url, nav)


def test_a_long_file_in_devanagari_is_taken_whole(editing: EditorWeb) -> None:
    # Far above the 64 KB the other forms may post: a content file may hold 200,000 characters.
    editor = editing.browser(EDITOR)
    form = edit_form(editor, TEMPLATE)
    long_text = form["text"] + "\n\nनमस्ते, यह एक लंबी पंक्ति है।\n" * 4_000
    assert len(long_text.encode("utf-8")) > 300_000
    saved = post(editor, "/admin/content/save", form, text=long_text, note="long")
    assert saved.status_code == 303, saved.text[:500]
    assert editing.store.files(2)[TEMPLATE] == long_text
