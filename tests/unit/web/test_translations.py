"""The pages' translation catalogs, as CI checks them: every shipped catalog translates every message
of messages.pot, with nothing fuzzy and the same placeholders and HTML tags; messages.pot holds what
babel.cfg extracts today; plurals follow CLDR (Hindi: 0 is singular); numbers and dates follow the
locale (Hindi groups digits as 1,00,000)."""

from __future__ import annotations

import gettext
import os
import re
from datetime import date
from pathlib import Path
from typing import Final

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from nurture.domain.reasons import REASONS
from nurture.web.forms import REASON_LABELS
from nurture.web.languages import Languages
from tests.support.languages import templates_with_hindi
from tests.support.paths import ROOT

TRANSLATIONS: Final = ROOT / "templates" / "translations"
SHIPPED: Final = sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
PLACEHOLDER: Final = re.compile(r"%\([a-z_]+\)s")
TAG: Final = re.compile(r"</?[a-z]+[^>]*>")


def read(path: Path) -> Catalog:
    with path.open("rb") as source:
        return read_po(source)


def ids(catalog: Catalog) -> set[str | tuple[str, ...]]:
    return {message.id if isinstance(message.id, str) else tuple(message.id)
            for message in catalog if message.id}


def test_hindi_is_shipped() -> None:
    assert [path.parent.parent.name for path in SHIPPED] == ["hi"]


def test_messages_pot_holds_what_the_pages_and_the_web_app_say_today() -> None:
    """A page string added without `pybabel extract` (see babel.cfg) fails here."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    extracted = {message[2] if isinstance(message[2], str) else tuple(message[2])
                 for message in extract_from_dir(str(ROOT), method_map, options_map,
                                                 keywords=keywords)}
    assert extracted == ids(read(TRANSLATIONS / "messages.pot"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.parent.parent.name)
def test_no_untranslated_or_fuzzy_message_in_a_shipped_catalog(path: Path) -> None:
    catalog = read(path)
    assert not catalog.fuzzy, "the header is marked fuzzy: pybabel compile would skip it"
    assert ids(catalog) == ids(read(TRANSLATIONS / "messages.pot")), "run pybabel update"
    problems = []
    for message in catalog:
        if not message.id:
            continue
        english = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {english[0]}")
        if not all(strings):
            problems.append(f"untranslated: {english[0]}")
        for text in strings:
            if sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(english[-1])):
                problems.append(f"placeholders differ: {english[0]}")
            if sorted(TAG.findall(text)) != sorted(TAG.findall(english[-1])):
                problems.append(f"HTML tags differ: {english[0]}")
    assert problems == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.parent.parent.name)
def test_the_plural_rule_is_cldr_s(path: Path) -> None:
    """The catalog's Plural-Forms picks the singular exactly where CLDR says "one"."""
    catalog = read(path)
    cldr = Locale.parse(path.parent.parent.name).plural_form
    chooser = gettext.c2py(catalog.plural_expr)
    for n in range(0, 250):
        assert (chooser(n) == 0) is (cldr(n) == "one"), n


def test_hindi_treats_zero_as_singular_and_english_does_not(tmp_path: Path) -> None:
    languages = Languages(templates_with_hindi(tmp_path))
    hindi = languages.speech("hi-IN")
    # One msgid pair of the catalog: both Hindi forms read the same, so compare the rule itself.
    layer = hindi.translations._layers[0]  # type: ignore[attr-defined]
    assert [layer.plural(n) for n in (0, 1, 2, 5)] == [0, 0, 1, 1]
    english = languages.speech("en")
    assert english.ngettext("%(count)s day", "%(count)s days", 0) == "%(count)s days"
    assert english.ngettext("%(count)s day", "%(count)s days", 1) == "%(count)s day"


def test_numbers_and_dates_follow_the_locale(tmp_path: Path) -> None:
    languages = Languages(templates_with_hindi(tmp_path))
    assert languages.speech("hi-IN").number(100000) == "1,00,000"
    assert languages.speech("hi-IN").number(12345678) == "1,23,45,678"
    assert languages.speech("en-IN").number(100000) == "1,00,000"
    assert languages.speech("en").number(100000) == "100,000"
    day = date(2026, 4, 1)
    assert languages.speech("hi-IN").date(day) == "बुधवार, 1 अप्रैल 2026"
    assert languages.speech("en").date(day) == "Wednesday, 1 April 2026"


def test_the_locales_people_can_choose_are_the_locale_files(tmp_path: Path) -> None:
    languages = Languages(templates_with_hindi(tmp_path))
    assert languages.locales() == ["en", "en-IN", "hi-IN"]
    assert languages.valid("hi-IN") == "hi-IN"
    assert languages.valid("fr") is None
    assert languages.speech("fr").locale == "en", "an unknown locale speaks English"
    hindi = languages.speech("hi-IN")
    assert hindi.gettext("Sign up") == "साइन अप करें"
    assert hindi.gettext("A text no catalog has") == "A text no catalog has"


def test_a_catalog_edited_after_its_mo_was_built_is_read_from_the_po(tmp_path: Path) -> None:
    templates = templates_with_hindi(tmp_path)
    po = templates / "translations" / "hi" / "LC_MESSAGES" / "messages.po"
    with po.with_suffix(".mo").open("wb") as mo:
        write_mo(mo, read(po))
    assert Languages(templates).speech("hi-IN").gettext("Sign up") == "साइन अप करें", "the .mo"
    os.utime(po.with_suffix(".mo"), (1_000_000_000, 1_000_000_000))
    po.write_text(po.read_text(encoding="utf-8").replace('msgstr "साइन अप करें"',
                                                         'msgstr "अभी साइन अप करें"'),
                  encoding="utf-8")
    assert Languages(templates).speech("hi-IN").gettext("Sign up") == "अभी साइन अप करें"


def test_the_reason_labels_marked_for_translation_are_the_domain_s() -> None:
    assert REASON_LABELS == REASONS
