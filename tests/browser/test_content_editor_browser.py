"""The content editor in headless Chromium at 1280 px: edit an email and watch the preview follow,
save it and find it in the history; a broken edit shows its line and saves nothing; a script typed
into an email never runs in the admin pages; and the editor passes the accessibility checks.
Screenshots go to artifacts/screenshots/content-editor/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from nurture.store.content_snapshots import SqlContentStore
from nurture.store.database import make_engine, upgrade
from tests.browser.a11y import broken_references, contrast_report, structure_problems, unlabelled_controls
from tests.integration.web.test_content_editor import EDITOR, TEMPLATE, build, sample_content
from tests.support.admin import PASSWORD
from tests.support.paths import ROOT
from tests.support.web import serve

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "artifacts" / "screenshots" / "content-editor"
WIDTH = 1280
OLD_LINE = "Thank you for signing up."
NEW_LINE = "Thank you so much for joining us."


@dataclass
class Site:
    url: str
    store: SqlContentStore


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The app in database mode on a real server, with the sample content as version 1."""
    database_url = f"sqlite:///{tmp_path / 'nurture.db'}"
    upgrade(database_url)
    engine = make_engine(database_url)
    web = build(database_url, engine, tmp_path, source="database")
    assert web.runtime is not None
    store = web.runtime.content_editor().store
    store.save(sample_content(), author="test", note="imported", based_on=None, now=web.clock(),
               action="import")
    try:
        with serve(web.app) as url:
            yield Site(url, store)
    finally:
        engine.dispose()


@pytest.fixture
def page(chromium: Browser, site: Site) -> Iterator[Page]:
    context = chromium.new_context(base_url=site.url, viewport={"width": WIDTH, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Quiet first when it comes soon; a slow check still running needn't hold the picture.
    with suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=5_000)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, target: str) -> None:
    page.goto(target)
    page.get_by_label("Name").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {EDITOR}")).to_be_visible()


def sign_in_and_open(page: Page, path: str) -> None:
    sign_in(page, f"/admin/content/edit?path={path}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(path)


def preview_body(page: Page) -> str:
    return page.frame_locator("#preview-frame").locator("body").inner_text(timeout=20_000)


def watch_for_trouble(page: Page) -> list[str]:
    """CSP refusals on the admin pages and any dialog a script opens, as they happen."""
    trouble: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and ("Refused" in message.text
                                        or "Content Security Policy" in message.text):
            trouble.append(message.text)

    def dialog(opened: Dialog) -> None:
        trouble.append(f"a {opened.type} opened: {opened.message}")
        opened.dismiss()

    page.on("console", console)
    page.on("dialog", dialog)
    return trouble


def test_edit_an_email_watch_the_preview_save_and_find_it_in_the_history(
        page: Page, site: Site) -> None:
    trouble = watch_for_trouble(page)
    sign_in(page, "/admin/content")
    expect(page.get_by_role("heading", level=1)).to_have_text("Content")
    shot(page, "01-content")
    page.get_by_role("link", name="welcome.md").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(TEMPLATE)
    expect(page.get_by_label("Step to show")).to_have_value("sample|welcome|en")
    expect(page.frame_locator("#preview-frame").locator("body")).to_contain_text(OLD_LINE)

    editor = page.get_by_label(f"Text of {TEMPLATE}")
    editor.fill(editor.input_value().replace(OLD_LINE, NEW_LINE))
    expect(page.frame_locator("#preview-frame").locator("body")).to_contain_text(
        NEW_LINE, timeout=30_000)
    expect(page.locator("#check-status")).to_have_text("No problems found. You can save.",
                                                       timeout=30_000)
    page.get_by_label("Phone (375 px)").check()
    frame = page.locator("#preview-frame").bounding_box()
    assert frame is not None and frame["width"] < 400
    shot(page, "02-edited-preview-phone")
    page.get_by_label("Desktop").check()

    page.get_by_label("What did you change?").fill("A warmer first line")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page).to_have_url(re.compile(r"/admin/content/history\?saved=2#version-2$"))
    expect(page.get_by_role("status")).to_have_text("Saved as version 2. It is live now.")
    expect(page.locator("#version-2")).to_contain_text("A warmer first line")
    expect(page.locator("#version-2")).to_have_class("is-current")
    shot(page, "03-history")
    assert NEW_LINE in site.store.files(2)[TEMPLATE]

    page.get_by_role("link", name="Changes in version 2").click()
    expect(page.locator(".diff-added")).to_contain_text(NEW_LINE)
    shot(page, "04-diff")
    assert trouble == [], trouble


def test_a_broken_edit_shows_its_line_and_saves_nothing(page: Page, site: Site) -> None:
    trouble = watch_for_trouble(page)
    sign_in_and_open(page, TEMPLATE)
    editor = page.get_by_label(f"Text of {TEMPLATE}")
    lines = editor.input_value().split("\n")
    lines[2] += " {% if first_name %}never closed"
    editor.fill("\n".join(lines))
    problem = page.locator("#problem-list .problem-error").first
    expect(problem).to_be_visible(timeout=30_000)
    expect(page.locator("#check-status")).to_contain_text("Saving is refused")
    line = problem.locator("button.link-button")
    expect(line).to_have_text(re.compile(r"Line \d+"))
    shot(page, "05-broken-edit")
    line.click()
    expect(editor).to_be_focused()
    number = (line.get_attribute("data-line") or "0")
    expect(page.locator("#cursor-position")).to_contain_text(f"Line {number},")

    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("heading", name="Nothing was saved: please fix these first")).to_be_visible()
    expect(page.locator("#problem-list")).to_contain_text(f"Line {number}")
    expect(editor).to_have_value(re.compile("never closed"))
    shot(page, "06-broken-edit-refused")
    assert [version.number for version in site.store.versions()] == [1]
    assert trouble == [], trouble


def test_a_script_typed_into_an_email_never_runs_in_the_admin_pages(page: Page,
                                                                    site: Site) -> None:
    trouble = watch_for_trouble(page)
    sign_in_and_open(page, "templates/layouts/email.html")
    page.get_by_label("Step to show").select_option("sample|welcome|en")
    editor = page.get_by_label("Text of templates/layouts/email.html")
    hostile = ('<script>alert("ran");document.body.setAttribute("data-ran", "script");'
               'parent.document.body.setAttribute("data-ran", "script")</script>'
               '<img src="data:," alt="" onerror="parent.document.body.setAttribute(\'data-ran\', '
               "'handler')\"></body>")
    editor.fill(editor.input_value().replace("</body>", hostile))
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("script")).to_have_count(1, timeout=30_000)
    expect(frame.locator("body")).to_contain_text(OLD_LINE)
    # The content rules refuse it too: nothing that runs may be saved into an email.
    expect(page.locator("#check-status")).to_contain_text("Saving is refused", timeout=30_000)
    expect(page.locator("#problem-list")).to_contain_text("the HTML holds <script>")
    page.wait_for_timeout(500)  # time enough for an inline script or a handler to have run
    assert frame.locator("body").get_attribute("data-ran") is None, "the script is inert"
    assert page.locator("body").get_attribute("data-ran") is None
    shot(page, "07-hostile-edit-sandboxed")
    assert not [item for item in trouble if "opened" in item], trouble


def test_the_editor_passes_the_accessibility_checks(page: Page) -> None:
    sign_in_and_open(page, TEMPLATE)
    expect(page.frame_locator("#preview-frame").locator("body")).to_contain_text(OLD_LINE)
    checked, low_contrast = contrast_report(page)
    problems = [
        *unlabelled_controls(page),
        *broken_references(page),
        # The admin pages have no footer: they are not the public site's pages.
        *(p for p in structure_problems(page) if "contentinfo" not in p),
        *(str(finding) for finding in low_contrast),
    ]
    assert checked > 20, "the contrast check saw the page"
    assert problems == [], "\n".join(problems)
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.get_by_label(f"Text of {TEMPLATE}").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("What did you change?")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save as a new version")).to_be_focused()
    shot(page, "08-editor")
