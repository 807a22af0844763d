"""The page after pressing the confirm button says what really happens to the first email: on its
way now (an immediate first step, at any hour), or later in the person's daytime (a first step that
keeps the window); nothing new on a second press; and it names nothing a glance could read."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from nurture.content.rules import DEFAULT_REVEALING_WORDS
from nurture.store.models import Delivery
from tests.support.web import Web, rows

KOLKATA = ZoneInfo("Asia/Kolkata")
NIGHT = datetime(2026, 3, 3, 3, 0, tzinfo=KOLKATA).astimezone(UTC)
REVEALING = re.compile(r"\b(" + "|".join(sorted(DEFAULT_REVEALING_WORDS)) + r")", re.IGNORECASE)


def _main(page: str) -> str:
    """The page's own content: the footer's framing names therapy on purpose, on every page."""
    return page.split('<main id="main"', 1)[1].split("</main>", 1)[0]


def _confirm_at_night(web: Web, **form: str) -> str:
    web.clock.now = NIGHT
    assert web.signup(time_zone="Asia/Kolkata", locale="en-IN", **form).status_code == 200
    confirmed = web.confirm()
    assert confirmed.status_code == 200, confirmed.text
    return _main(confirmed.text)


def test_at_night_an_immediate_welcome_is_on_its_way_now(web: Web) -> None:
    main = _confirm_at_night(web)
    assert "The first email is on its way now" in main
    assert "will arrive during your daytime" not in main
    [welcome] = [d for d in rows(web.engine, Delivery) if d.kind == "step"]
    assert welcome.due_at == NIGHT and welcome.immediate

    again = _main(web.confirm().text)
    assert "There's nothing more to do" in again and "on its way" not in again


def test_a_first_step_that_keeps_the_window_is_promised_for_the_daytime(web: Web) -> None:
    sample = web.settings.sequences_dir / "sample.yaml"
    sample.write_text(sample.read_text().replace("    immediate: true\n", ""))
    assert web.content.refresh(), "the edited content takes over"
    main = _confirm_at_night(web)
    assert "The first email is on its way and will arrive during your daytime" in main
    assert "on its way now" not in main
    [welcome] = [d for d in rows(web.engine, Delivery) if d.kind == "step"]
    assert welcome.due_at.astimezone(KOLKATA).hour == 9 and not welcome.immediate


def test_in_discreet_mode_the_page_names_nothing_revealing(web: Web) -> None:
    main = _confirm_at_night(web, discreet="yes")
    assert "on its way now" in main
    assert not REVEALING.search(main), REVEALING.search(main)
