"""Browser fixtures: Debian's Chromium driven by Playwright, and a folder for screenshots.

The browser is the system's /usr/bin/chromium, never one downloaded by `playwright install`. When
it (or the playwright package) is missing the browser tests are skipped, or fail when
NURTURE_REQUIRE_CHROMIUM=1, as CI sets it, so that CI cannot pass without running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import pytest

from tests.support.paths import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM: Final = Path("/usr/bin/chromium")
# The background-networking flags matter: this machine refuses outside connections, and without
# them Chromium keeps trying (and the launch can stall).
CHROMIUM_ARGS: Final = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
REQUIRE_ENV: Final = "NURTURE_REQUIRE_CHROMIUM"
# Any wait longer than this is a bug, not a slow machine; the default is 30 s.
DEFAULT_TIMEOUT_MS: Final = 10_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium through Playwright")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium for one test module; give each test its own context.

    Module scope, not session: between its calls Playwright's sync API leaves its asyncio loop
    marked as running in the main thread, so while it is started no other test can run an event
    loop there (tests/support/web.py's Browser does). Stopping it after each browser module
    keeps the rest of the suite unaffected, for about a second per module. For the same reason a
    browser test module must not drive asyncio in the main thread itself (uvicorn in its own
    thread is fine).
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        _unavailable(f"the playwright package is not installed: {error}")
    playwright = sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=list(CHROMIUM_ARGS), timeout=30_000)
        except Error as error:
            _unavailable(f"{CHROMIUM} did not start: {error.message.splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """artifacts/screenshots under the repository root (git-ignored), for people to look at."""
    path = ROOT / "artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
