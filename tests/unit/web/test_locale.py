"""Choosing a page's locale from the browser: Accept-Language with its q-values, and the time zone;
the locales come from the locale files, so these use the keys a folder with hi-IN.yaml gives."""

from __future__ import annotations

import pytest

from nurture.web.locale import (
    crisis_locale,
    from_accept_language,
    from_time_zone,
    language_ranges,
    zones_of,
)

KEYS = ["en", "en-IN", "hi-IN"]
ENGLISH_ONLY = ["en", "en-IN"]


def test_language_ranges_follow_their_weights_and_drop_refusals() -> None:
    assert language_ranges("fr;q=0.5, en-GB, de;q=0.9, it;q=0") == ["en-GB", "de", "fr"]
    assert language_ranges("a;q=0.5, b;q=0.5, c") == ["c", "a", "b"], "ties keep their order"
    assert language_ranges("en;q=2, fr;q=x, !!, , es") == ["es"], "malformed pieces are skipped"
    assert language_ranges("x" * 600) == []


@pytest.mark.parametrize(("header", "expected"), [
    ("en-IN", "en-IN"),
    ("EN-in,en;q=0.8", "en-IN"),
    ("hi-IN,hi;q=0.9,en;q=0.8", "hi-IN"),
    ("hi", "hi-IN"),  # a bare language finds the locale written in it
    ("hi;q=0.4, en-GB", "en"),  # q-values honoured: English is asked for first
    ("en-GB;q=0.3, hi;q=0.6", "hi-IN"),
    ("ta-IN", "en-IN"),  # no Tamil yet: India's numbers, in the first Indian locale
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
    assert from_accept_language(header, KEYS) == expected


def test_without_a_hindi_file_hindi_browsers_in_india_get_india_s_english() -> None:
    assert from_accept_language("hi-IN,hi;q=0.9,en;q=0.8", ENGLISH_ONLY) == "en-IN"
    assert from_accept_language("hi", ENGLISH_ONLY) is None


def test_the_time_zone_names_a_region_and_the_browser_its_language() -> None:
    assert from_time_zone("Asia/Kolkata", KEYS) == "en-IN"
    assert from_time_zone("Asia/Calcutta", KEYS) == "en-IN", "the older name Chromium still reports"
    assert from_time_zone("Asia/Kolkata", KEYS, ["hi", "en"]) == "hi-IN"
    assert from_time_zone("Asia/Kolkata", KEYS, ["fr"]) == "en-IN"
    assert from_time_zone("Asia/Kolkata", ["en"]) is None
    assert from_time_zone("Europe/London", KEYS) is None
    assert from_time_zone(None, KEYS) is None
    assert zones_of(KEYS) == {"en": "", "en-IN": "Asia/Calcutta Asia/Kolkata",
                              "hi-IN": "Asia/Calcutta Asia/Kolkata"}


def test_the_crisis_page_prefers_a_region_to_a_bare_language() -> None:
    assert crisis_locale("en", "Asia/Kolkata", KEYS) == "en-IN"
    assert crisis_locale("en", "UTC", KEYS) == "en"
    assert crisis_locale("en-IN", "Europe/London", KEYS) == "en-IN", "a chosen region stays"
    assert crisis_locale("hi-IN", "Europe/London", KEYS) == "hi-IN"
    assert crisis_locale("../etc", "Asia/Kolkata", KEYS) == "en-IN"
    assert crisis_locale("xx", None, KEYS) == "en"
