"""Choosing a page's locale from the browser: Accept-Language with its q-values, and the time zone."""

from __future__ import annotations

import pytest

from nurture.web.locale import (
    crisis_locale,
    from_accept_language,
    from_time_zone,
    language_ranges,
)


def test_language_ranges_follow_their_weights_and_drop_refusals() -> None:
    assert language_ranges("fr;q=0.5, en-GB, de;q=0.9, it;q=0") == ["en-GB", "de", "fr"]
    assert language_ranges("a;q=0.5, b;q=0.5, c") == ["c", "a", "b"], "ties keep their order"
    assert language_ranges("en;q=2, fr;q=x, !!, , es") == ["es"], "malformed pieces are skipped"
    assert language_ranges("x" * 600) == []


@pytest.mark.parametrize(("header", "expected"), [
    ("en-IN", "en-IN"),
    ("EN-in,en;q=0.8", "en-IN"),
    ("hi-IN,hi;q=0.9,en;q=0.8", "en-IN"),  # India's numbers, whatever the language asked for
    ("en-GB,en;q=0.9", "en"),
    ("en-GB;q=0.5, en-IN;q=0.9", "en-IN"),
    ("en-IN;q=0, en", "en"),
    ("fr-FR, de", None),
    ("*", None),
    ("", None),
    (None, None),
])
def test_accept_language_chooses_the_best_locale_we_have(header: str | None,
                                                         expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_the_time_zone_names_a_region() -> None:
    assert from_time_zone("Asia/Kolkata") == "en-IN"
    assert from_time_zone("Asia/Calcutta") == "en-IN", "the older name Chromium still reports"
    assert from_time_zone("Europe/London") is None
    assert from_time_zone(None) is None


def test_the_crisis_page_prefers_a_region_to_a_bare_language() -> None:
    assert crisis_locale("en", "Asia/Kolkata") == "en-IN"
    assert crisis_locale("en", "UTC") == "en"
    assert crisis_locale("en-IN", "Europe/London") == "en-IN", "a chosen region stays"
    assert crisis_locale("../etc", "Asia/Kolkata") == "en-IN"
    assert crisis_locale("xx", None) == "en"
