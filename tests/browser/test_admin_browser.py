"""The admin pages in headless Chromium: sign in, open a sequence, switch persona and watch the sandboxed
preview change, then send a test email to a real SMTP server; screenshots go to artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from nurture.store.database import make_engine, upgrade
from tests.support.admin import (
    ADMIN,
    BLAME_SECTION,
    ENV_ADMIN_USERS,
    PASSWORD,
    PEOPLE,
    STIGMA_SECTION,
    build_admin_web,
    deliver_to_people,
)
from tests.support.paths import ROOT
from tests.support.smtp import RecordingSmtpServer
from tests.support.web import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots" / "admin"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium; skipped when missing, unless NURTURE_REQUIRE_CHROMIUM=1 makes it a failure."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed"
        if os.environ.get("NURTURE_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason + " (NURTURE_REQUIRE_CHROMIUM=1)", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def admin_server(tmp_path: Path, smtp_server: RecordingSmtpServer, *, people: bool = True,
                 templates_dir: Path | None = None) -> Iterator[str]:
    """The app on a real server; with `people`, three of them already got a few emails."""
    database_url = f"sqlite:///{tmp_path / 'nurture.db'}"
    upgrade(database_url)
    engine = make_engine(database_url)
    harness = build_admin_web(database_url, engine, tmp_path, smtp_server.url,
                              templates_dir=templates_dir)
    try:
        if people:
            off_loop(lambda: deliver_to_people(harness, smtp_server))
        with serve(harness.app) as url:
            yield url
    finally:
        off_loop(harness.close)
        engine.dispose()


@pytest.fixture(autouse=True)
def admin_user(monkeypatch: pytest.MonkeyPatch) -> None:
    # Cheap argon2 parameters: the default costs about a second per sign-in on a small machine.
    monkeypatch.setenv(ENV_ADMIN_USERS, f"{ADMIN}:" + PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD))


def sign_in(page: Page, path: str) -> None:
    page.goto(path)
    page.get_by_label("Name").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {ADMIN}")).to_be_visible()


def off_loop(work: Callable[[], None]) -> None:
    """The harness drives its own event loops, which cannot run on this thread while Playwright's
    sync API has a loop running here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result()


def shot(page: Page, name: str, section: str | None = None) -> None:
    """The whole page, and a section on its own: Chromium paints the sandboxed preview frames (out
    of process) only near the viewport, so a full-page shot shows most of them blank."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    if section is not None:
        page.locator(section).screenshot(path=str(SCREENSHOTS / f"{name}-section.png"))
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    # Back to the top: after a full-page shot far down, headless Chromium sometimes lets the next
    # click on a checkbox up the page go nowhere (seen with the out-of-process preview frames).
    page.evaluate("window.scrollTo(0, 0)")


def preview_text(page: Page, step: str, view: str = "desktop") -> str:
    frame = page.frame_locator(f'iframe[data-step="{step}"][data-view="{view}"]')
    return frame.locator("body").inner_text(timeout=10_000)


@pytest.fixture
def base_url(tmp_path: Path, smtp_server: RecordingSmtpServer) -> Iterator[str]:
    with admin_server(tmp_path, smtp_server) as url:
        yield url


def test_sign_in_preview_personas_and_send_a_test(chromium: Browser, base_url: str,
                                                  smtp_server: RecordingSmtpServer) -> None:
    context = chromium.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        # Inline styles or scripts on the admin pages would be refused by the CSP, and said so here.
        if message.type == "error" and ("Refused" in message.text
                                        or "Content Security Policy" in message.text):
            problems.append(message.text)

    page.on("console", watch)
    try:
        page.goto("/admin/sequences/sample")
        expect(page).to_have_url(f"{base_url}/admin/login?next=%2Fadmin%2Fsequences%2Fsample")
        page.get_by_label("Name").fill(ADMIN)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("do not match an admin account")
        shot(page, "01-sign-in-failed")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base_url}/admin/sequences/sample")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sample: three short notes")

        page.get_by_label("Worried they will be blamed").check()
        page.get_by_label("First name").fill("Asha")
        page.get_by_role("button", name="Show this persona").click()
        expect(page.locator("#step-understanding .subject")).to_have_text(
            "Why asking for help can feel risky to them")
        blamed = preview_text(page, "understanding")
        assert BLAME_SECTION in blamed and STIGMA_SECTION not in blamed
        assert "Hi Asha" in blamed
        shot(page, "02-persona-fear-of-blame", "#step-understanding")

        page.get_by_label("Worried they will be blamed").uncheck()
        page.get_by_label("Therapy feels like it is only for serious problems").check()
        page.get_by_label("Preview width").select_option("both")
        page.get_by_role("button", name="Show this persona").click()
        expect(page.locator('iframe[data-step="understanding"][data-view="phone"]')).to_be_visible()
        stigma = preview_text(page, "understanding", "phone")
        assert STIGMA_SECTION in stigma and BLAME_SECTION not in stigma
        assert preview_text(page, "understanding", "desktop") == stigma
        phone = page.locator('iframe[data-step="understanding"][data-view="phone"]').bounding_box()
        assert phone is not None and phone["width"] < 400
        shot(page, "03-persona-stigma-both-widths", "#step-understanding")

        page.get_by_label("Send a test of “understanding” to").fill("marketer@example.org")
        page.locator("#step-understanding").get_by_role("button", name="Send test").click()
        expect(page.locator("#step-understanding .notice")).to_contain_text(
            "Sent “[TEST] Why asking for help can feel risky to them” to marketer@example.org")
        shot(page, "04-test-sent")
        (received,) = smtp_server.wait_for(1)
        assert received.recipients == ("marketer@example.org",)
        assert received.message["Subject"] == "[TEST] Why asking for help can feel risky to them"
        assert received.message["X-Nurture-Test"] == "yes"

        page.get_by_role("link", name="Results", exact=True).click()
        expect(page.locator("svg.funnel title").first).to_have_text(
            "Emails sent per step: Sample: three short notes")
        expect(page.locator("#stats-sample")).to_contain_text("welcome")
        shot(page, "05-results")
        page.get_by_role("link", name="Deliveries", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Deliveries")
        expect(page.locator("table.recent")).to_contain_text("a***@e***.org")
        assert not any(email in page.content() for email in PEOPLE)
        shot(page, "06-deliveries")

        page.get_by_role("button", name="Sign out").click()
        expect(page.locator(".notice")).to_have_text("You are signed out.")
        page.goto("/admin")
        expect(page).to_have_url(f"{base_url}/admin/login?next=%2Fadmin")
        assert problems == [], problems
    finally:
        context.close()


def test_scripts_in_an_email_template_never_run_in_the_admin_pages(
        chromium: Browser, tmp_path: Path, smtp_server: RecordingSmtpServer) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    layout = templates / "layouts" / "email.html"
    hostile = ('<script>document.body.setAttribute("data-ran", "script");'
               'parent.document.body.setAttribute("data-ran", "script")</script>'
               '<img src="data:," alt="" onerror="document.body.setAttribute(\'data-ran\', \'handler\')">'
               "</body>")
    layout.write_text(layout.read_text(encoding="utf-8").replace("</body>", hostile),
                      encoding="utf-8")
    with admin_server(tmp_path, smtp_server, people=False, templates_dir=templates) as url:
        context = chromium.new_context(base_url=url)
        page = context.new_page()
        try:
            sign_in(page, "/admin/sequences/sample?view=both")
            frame = page.frame_locator('iframe[data-step="welcome"][data-view="desktop"]')
            expect(frame.locator("body")).to_contain_text("Thank you for signing up")
            page.wait_for_load_state("networkidle")
            assert frame.locator("script").count() == 1, "the script is in the email..."
            assert frame.locator("body").get_attribute("data-ran") is None, "...but never runs"
            assert page.locator("body").get_attribute("data-ran") is None
            shot(page, "07-hostile-template-sandboxed", "#step-welcome")
        finally:
            context.close()
