"""The languages the pages speak, from the locale files' `language` blocks and the gettext catalogs
of templates/translations/<language>/LC_MESSAGES/messages.po: a new locale is a new locale file and
a catalog, never new code. A `Speech` is one locale's way of saying things on a page: its
translations (borrowing along the locale's fallback chain), lang and dir, and its numbers and dates."""

from __future__ import annotations

import gettext
import io
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from nurture.rendering.locales import LOCALE_FALLBACK, Locales
from nurture.rendering.types import Language

log = logging.getLogger(__name__)

DOMAIN: Final = "messages"
TRANSLATIONS_DIR: Final = "translations"
ENGLISH: Final = Language(name="English", tag="en")
# Bare "en" speaks to the whole world: CLDR's world English writes "Wednesday, 1 April 2026", not
# the United States' "Wednesday, April 1, 2026".
BABEL_NAMES: Final[dict[str, str]] = {"en": "en_001"}


def _babel_locale(*candidates: str) -> Locale:
    """The first candidate Babel knows ("hi-IN", then its tag "hi"), else English."""
    for candidate in candidates:
        try:
            return Locale.parse(BABEL_NAMES.get(candidate, candidate).replace("-", "_"))
        except (ValueError, UnknownLocaleError):
            continue
    return Locale("en")


@dataclass(frozen=True)
class Speech:
    """How one locale's pages speak: texts, lang and dir attributes, numbers and dates."""

    locale: str
    language: Language
    translations: gettext.NullTranslations
    babel: Locale

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        """The form for `count` by the language's own plural rule (Hindi: 0 and 1 are singular)."""
        return self.translations.ngettext(singular, plural, count)

    def number(self, value: float) -> str:
        """A number grouped as the locale groups digits (hi-IN and en-IN: 1,00,000)."""
        return format_decimal(value, locale=self.babel)

    def date(self, value: date, form: str = "full") -> str:
        """A date as the locale writes it: "Wednesday, 2 December 2026", "बुधवार, 2 दिसंबर 2026"."""
        return format_date(value, format=form, locale=self.babel)


def _catalog_file(folder: Path) -> gettext.GNUTranslations | None:
    """A language's compiled catalog: the .mo when it is at least as new as the .po, else the .po
    compiled in memory, so an edited catalog shows even where no build step ran."""
    po = folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    mo = po.with_suffix(".mo")
    try:
        if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
            return gettext.GNUTranslations(io.BytesIO(mo.read_bytes()))
        if po.is_file():
            with po.open("rb") as source:
                catalog = read_po(source, locale=folder.name)
            compiled = io.BytesIO()
            write_mo(compiled, catalog)
            compiled.seek(0)
            return gettext.GNUTranslations(compiled)
    except (OSError, ValueError) as error:
        log.error("translation catalog cannot be read", extra={"file": str(po), "error": str(error)})
    return None


def load_catalogs(directory: Path) -> dict[str, gettext.GNUTranslations]:
    """Every catalog in `directory`, by its folder's name in lower case with "-" ("hi", "hi-in")."""
    found: dict[str, gettext.GNUTranslations] = {}
    if directory.is_dir():
        for folder in sorted(path for path in directory.iterdir() if path.is_dir()):
            catalog = _catalog_file(folder)
            if catalog is not None:
                found[folder.name.replace("_", "-").lower()] = catalog
    return found


class Languages:
    """The locales people can choose (one per usable locale file) and how each one's pages speak."""

    def __init__(self, templates_dir: Path) -> None:
        self._locales = Locales(templates_dir / "locales")
        self._catalogs = load_catalogs(templates_dir / TRANSLATIONS_DIR)
        self._speech: dict[str, Speech] = {}

    def names(self) -> dict[str, str]:
        """Locale key -> the language's own name, for the language switch and the choice of locale."""
        return {key: language.name for key, language in self._locales.languages().items()}

    def tags(self) -> dict[str, str]:
        """Locale key -> its BCP 47 tag, for lang= and hreflang= on the language switch."""
        return {key: language.tag for key, language in self._locales.languages().items()}

    def locales(self) -> list[str]:
        """The locale keys, sorted."""
        return list(self._locales.languages())

    def valid(self, value: object) -> str | None:
        """`value` when it is one of the locales people can choose, else None."""
        return value if isinstance(value, str) and value in self._locales.languages() else None

    def speech(self, locale: str) -> Speech:
        """How pages in `locale` speak; an unknown locale speaks English."""
        key = self.valid(locale) or LOCALE_FALLBACK
        found = self._speech.get(key)
        if found is None:
            found = self._speech[key] = self._build(key)
        return found

    def _build(self, key: str) -> Speech:
        language = self._locales.languages().get(key, ENGLISH)
        # hi-IN: its own catalog, then hi's, then en-IN's...; English is the msgid itself.
        layers = [self._catalogs[name.lower()] for name in self._locales.chain(key)
                  if name.lower() in self._catalogs]
        return Speech(locale=key, language=language, translations=_Chain(layers),
                      babel=_babel_locale(key, language.tag))


class _Chain(gettext.NullTranslations):
    """Catalogs asked in order; the first that translates a message answers, with its own plural
    rule. A catalog answers the msgid back when it lacks a message: then the next is asked."""

    def __init__(self, layers: list[gettext.GNUTranslations]) -> None:
        super().__init__()
        self._layers = layers

    def gettext(self, message: str) -> str:
        for layer in self._layers:
            found = layer.gettext(message)
            if found != message:
                return found
        return message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        for layer in self._layers:
            found = layer.ngettext(msgid1, msgid2, n)
            if found not in (msgid1, msgid2):
                return found
        return msgid1 if n == 1 else msgid2


DEFAULT_SPEECH: Final = Speech(locale=LOCALE_FALLBACK, language=ENGLISH,
                               translations=gettext.NullTranslations(), babel=_babel_locale("en"))
