"""The locale files of templates/locales/: the crisis footer, resources, booking link, language,
discreet words, readability rule and the layouts' words per locale,
read and checked (each problem with its file, line and fix), and the lookup from a subscriber's
locale to the file that serves it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import yaml

from nurture.domain.problems import ContentProblem
from nurture.rendering.types import (
    CrisisDirectory,
    CrisisInfo,
    CrisisLine,
    Language,
    LocaleData,
    ReadabilityRule,
)
from nurture.rendering.vocabulary import EMAIL_TEXTS

log = logging.getLogger(__name__)

LOCALE_FALLBACK: Final = "en"
RESOURCE_FIELDS: Final = ("title", "kind", "description", "url")
RESOURCE_KINDS: Final = frozenset({"article", "video", "guide"})
DIRECTIONS: Final = frozenset({"ltr", "rtl"})
MEASURES: Final = frozenset({"flesch", "sentences", "none"})
_FORMAT_FIX: Final = "follow the format of locales/en.yaml"

# Where in a locale file something is: keys and list indexes, e.g. ("crisis", "lines", 0, "name").
KeyPath = tuple[str | int, ...]


class LocaleError(Exception):
    """A locale file that cannot be used, with the place (or line) to look at."""

    def __init__(self, message: str, line: int = 1, *, at: KeyPath = ()) -> None:
        super().__init__(message)
        self.line = line
        self.at = at


def dotted(at: KeyPath) -> str:
    """("crisis", "lines", 0, "name") as people read it: crisis.lines[0].name."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _string(data: Mapping[str, Any], at: KeyPath, key: str, *, required: bool = True) -> str:
    value = data.get(key, None if required else "")
    if not isinstance(value, str):
        raise LocaleError(f"{dotted((*at, key))} must be text", at=(*at, key))
    return value


def _line(data: object, at: KeyPath) -> CrisisLine:
    if not isinstance(data, dict):
        raise LocaleError(f"{dotted(at)} must be a mapping with name, contact and note", at=at)
    return CrisisLine(name=_string(data, at, "name"), contact=_string(data, at, "contact"),
                      note=_string(data, at, "note", required=False))


def parse_crisis(crisis: object) -> CrisisInfo:
    """The `crisis` section of a locale file: heading, text, lines (name, contact, note), and the
    optional directory (name, https url) and framing."""
    if not isinstance(crisis, dict):
        raise LocaleError("'crisis' must be a mapping with heading, text and lines", at=("crisis",))
    lines_raw = crisis.get("lines", [])
    if not isinstance(lines_raw, list):
        raise LocaleError("crisis.lines must be a list", at=("crisis", "lines"))
    return CrisisInfo(
        heading=_string(crisis, ("crisis",), "heading"),
        text=_string(crisis, ("crisis",), "text"),
        lines=tuple(_line(entry, ("crisis", "lines", index)) for index, entry in enumerate(lines_raw)),
        directory=_parse_directory(crisis.get("directory")),
        framing=_string(crisis, ("crisis",), "framing", required=False),
    )


def _parse_directory(directory: object) -> CrisisDirectory | None:
    """`crisis.directory`: a directory of helplines (name and https url), or nothing."""
    at: KeyPath = ("crisis", "directory")
    if directory is None:
        return None
    if not isinstance(directory, dict):
        raise LocaleError("crisis.directory must be a mapping with name and url", at=at)
    url = _string(directory, at, "url")
    if not url.startswith("https://"):
        raise LocaleError("crisis.directory.url must be an https address", at=(*at, "url"))
    return CrisisDirectory(name=_string(directory, at, "name"), url=url)


def default_fallback(key: str) -> tuple[str, ...]:
    """hi-IN borrows from hi, then en; a bare language from en; en from nothing."""
    chain = [key.split("-", 1)[0]] if "-" in key else []
    chain.append(LOCALE_FALLBACK)
    return tuple(dict.fromkeys(part for part in chain if part != key))


def parse_language(key: str, raw: object) -> Language:
    """The optional `language` block: name, tag (BCP 47, for lang=), direction (ltr or rtl) and
    fallback (locales to borrow missing texts from, in order)."""
    at: KeyPath = ("language",)
    if raw is None:
        return Language(name=key, tag=key, fallback=default_fallback(key))
    if not isinstance(raw, dict):
        raise LocaleError("'language' must be a mapping with name, tag, direction and fallback",
                          at=at)
    direction = _string(raw, at, "direction", required=False) or "ltr"
    if direction not in DIRECTIONS:
        raise LocaleError("language.direction must be ltr or rtl", at=(*at, "direction"))
    fallback_raw = raw.get("fallback", list(default_fallback(key)))
    if not isinstance(fallback_raw, list) or not all(isinstance(x, str) for x in fallback_raw):
        raise LocaleError("language.fallback must be a list of locale names, e.g. [hi, en-IN, en]",
                          at=(*at, "fallback"))
    if key != LOCALE_FALLBACK and (not fallback_raw or fallback_raw[-1] != LOCALE_FALLBACK):
        raise LocaleError(f"language.fallback must end with {LOCALE_FALLBACK}: every text exists "
                          "there", at=(*at, "fallback"))
    return Language(name=_string(raw, at, "name"), tag=_string(raw, at, "tag"),
                    direction=direction, fallback=tuple(fallback_raw))


def parse_revealing_words(raw: object) -> tuple[str, ...]:
    """`discreet: {revealing_words: [...]}`: the locale's words that name the topic."""
    if raw is None:
        return ()
    words = raw.get("revealing_words", []) if isinstance(raw, dict) else None
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise LocaleError("discreet.revealing_words must be a list of words",
                          at=("discreet", "revealing_words"))
    return tuple(word.strip() for word in words)


def parse_readability(raw: object, language: Language) -> ReadabilityRule:
    """`readability`: measure (flesch, sentences or none) and its limits. Without the block,
    English is measured by Flesch and any other language by sentence and word length."""
    english = language.tag.split("-", 1)[0].lower() == "en"
    default = ReadabilityRule(measure="flesch" if english else "sentences")
    if raw is None:
        return default
    at: KeyPath = ("readability",)
    if not isinstance(raw, dict):
        raise LocaleError("'readability' must be a mapping with a measure", at=at)
    measure = raw.get("measure", default.measure)
    if measure not in MEASURES:
        raise LocaleError("readability.measure must be flesch, sentences or none",
                          at=(*at, "measure"))
    limits: dict[str, float] = {}
    for name in ("flesch_floor", "max_words_per_sentence", "max_long_word_share",
                 "long_word_graphemes"):
        value = raw.get(name, getattr(default, name))
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise LocaleError(f"readability.{name} must be a number", at=(*at, name))
        limits[name] = value
    return ReadabilityRule(measure=measure, flesch_floor=limits["flesch_floor"],
                           max_words_per_sentence=limits["max_words_per_sentence"],
                           max_long_word_share=limits["max_long_word_share"],
                           long_word_graphemes=int(limits["long_word_graphemes"]))


def parse_email_texts(raw: object) -> Mapping[str, str]:
    """`email`: the layouts' words in this locale, any of the fields of EMAIL_TEXTS."""
    if raw is None:
        return MappingProxyType({})
    if not _is_text_mapping(raw):
        raise LocaleError("'email' must be a mapping of texts", at=("email",))
    for name in raw:
        if name not in EMAIL_TEXTS:
            raise LocaleError(f"unknown field email.{name}; use one of: {', '.join(EMAIL_TEXTS)}",
                              at=("email", name))
    return MappingProxyType(dict(raw))


def _language_of(locale: str) -> str:
    return locale.split("-", 1)[0].lower()


def _is_text_mapping(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _parse_resources(resources_raw: object) -> tuple[Mapping[str, str], ...]:
    if not isinstance(resources_raw, list):
        raise LocaleError("'resources' must be a list", at=("resources",))
    resources: list[Mapping[str, str]] = []
    for index, entry in enumerate(resources_raw):
        if not _is_text_mapping(entry):
            raise LocaleError(f"resources[{index}] must be a mapping of text values",
                              at=("resources", index))
        resources.append(MappingProxyType(dict(entry)))
    return tuple(resources)


class _Source:
    """A locale file's text, its data, and the YAML nodes that say on which line each value is."""

    def __init__(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
            self.data: object = yaml.safe_load(text)
            self._root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            raise LocaleError(f"not valid YAML: {error.problem}",
                              (mark.line + 1) if mark else 1) from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise LocaleError(f"cannot read the file: {error}") from None

    def line_of(self, at: KeyPath) -> int:
        """The line of the value at `at`, or of the nearest enclosing one that exists."""
        node, line = self._root, 1
        for part in at:
            found = _child(node, part)
            if found is None:
                break
            node, line = found[1], found[0]
        return line


def _child(node: yaml.Node | None, part: str | int) -> tuple[int, yaml.Node] | None:
    """The child of a mapping (by key) or list (by index), and the line where it starts."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key.start_mark.line + 1, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item = node.value[part]
        return item.start_mark.line + 1, item
    return None


def _parse_locale(key: str, path: Path, source: _Source) -> LocaleData:
    """One locale file; LocaleError says what is wrong and where."""
    raw = source.data
    if not isinstance(raw, dict):
        raise LocaleError("the file must be a mapping with 'crisis' and 'resources'")
    info = parse_crisis(raw.get("crisis"))
    resources = _parse_resources(raw.get("resources", []))
    booking_raw = raw.get("booking", {})
    if not _is_text_mapping(booking_raw):
        raise LocaleError("'booking' must be a mapping with url and label", at=("booking",))
    language = parse_language(key, raw.get("language"))
    return LocaleData(key=key, crisis=info, resources=resources, path=path,
                      booking=MappingProxyType(dict(booking_raw)), language=language,
                      revealing_words=parse_revealing_words(raw.get("discreet")),
                      readability=parse_readability(raw.get("readability"), language),
                      email_texts=parse_email_texts(raw.get("email")))


def rule_problems(data: LocaleData, line_of: Callable[[KeyPath], int]) -> list[ContentProblem]:
    """What a usable locale file still lacks for readers: a way to reach help in a crisis, and
    resources in the documented format. `line_of` maps a KeyPath to its line in the file."""
    found: list[ContentProblem] = []
    crisis = data.crisis
    if not crisis.lines and crisis.directory is None:
        found.append(ContentProblem(
            data.path, line_of(("crisis", "lines")),
            "the crisis block has no number and no directory: a reader in crisis would find "
            "nothing to call",
            "add a line (name, contact, note) under crisis.lines, or a directory of helplines "
            "(name and an https url) under crisis.directory, as in locales/en.yaml"))
    for index, item in enumerate(data.resources):
        at: KeyPath = ("resources", index)
        missing = [name for name in RESOURCE_FIELDS if not item.get(name, "").strip()]
        if missing:
            found.append(ContentProblem(data.path, line_of(at),
                                        f"{dotted(at)} lacks {', '.join(missing)}",
                                        "give each resource a title, kind, description and url"))
        elif not item["url"].startswith("https://"):
            found.append(ContentProblem(data.path, line_of((*at, "url")),
                                        f"{dotted((*at, 'url'))} is not an https address",
                                        "link to the https version of the page"))
        elif item["kind"] not in RESOURCE_KINDS:
            found.append(ContentProblem(data.path, line_of((*at, "kind")),
                                        f"{dotted((*at, 'kind'))} is '{item['kind']}'",
                                        "use article, video or guide"))
    return found


def _normalize_locale(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


class Locales:
    """The usable locale files of one templates folder; `problems` holds the files that cannot be
    read, `rule_problems` what usable files lack (validate refuses both)."""

    def __init__(self, directory: Path) -> None:
        self._data: dict[str, LocaleData] = {}
        self.problems: list[ContentProblem] = []
        self.rule_problems: list[ContentProblem] = []
        self.fallbacks: dict[str, list[tuple[str, str]]] = {}
        """Locale to the layouts' words (field, locale used) it borrows from another language."""
        for path in sorted(directory.glob("*.yaml")):
            source: _Source | None = None
            try:
                source = _Source(path)
                data = _parse_locale(path.stem, path, source)
            except LocaleError as error:
                line = source.line_of(error.at) if source is not None and error.at else error.line
                self.problems.append(ContentProblem(path, line, str(error), _FORMAT_FIX))
                continue
            self._data[_normalize_locale(path.stem)] = data
            self.rule_problems.extend(rule_problems(data, source.line_of))
        self._data = {key: self._completed(data) for key, data in self._data.items()}
        if LOCALE_FALLBACK not in self._data:
            self.problems.append(
                ContentProblem(
                    directory / "en.yaml",
                    0,
                    "the fallback locale file is missing or invalid",
                    "create locales/en.yaml with the generic crisis footer",
                )
            )

    def _completed(self, data: LocaleData) -> LocaleData:
        """The file's data with each of the layouts' words it lacks taken from its chain (then
        English); a word taken from another language is logged."""
        texts: dict[str, str] = {}
        for name, english in EMAIL_TEXTS.items():
            source, text = next(((key, found.email_texts[name]) for key in self.chain(data.key)
                                 if (found := self._data.get(_normalize_locale(key))) is not None
                                 and name in found.email_texts), (LOCALE_FALLBACK, english))
            texts[name] = text
            if _language_of(source) != _language_of(data.key):
                self.fallbacks.setdefault(data.key, []).append((f"email.{name}", source))
        return dataclasses.replace(data, email_texts=MappingProxyType(texts))

    def log_fallbacks(self, key: str) -> None:
        """Log, once, the layouts' words the locale borrows from another language: called when
        an email in that locale is first rendered, so that commands that render nothing stay
        quiet."""
        for field, source in self.fallbacks.pop(key, []):
            log.info("email text fell back to another locale",
                     extra={"locale": key, "used_locale": source, "sequence": "", "step": "",
                            "field": field})

    def keys(self) -> list[str]:
        """The file names (without ".yaml") of the usable locale files, sorted."""
        return sorted({data.key for data in self._data.values()})

    def chain(self, locale: str) -> tuple[str, ...]:
        """Where a text for `locale` is looked for, in order: the locale itself, then its
        fallbacks (hi-IN: hi-IN, hi, en-IN, en). Locales without a file stay in the chain: a
        template folder may exist for a language that has no locale file of its own."""
        data = self._data.get(_normalize_locale(locale))
        fallback = data.language.fallback if data is not None else default_fallback(locale)
        return (locale, *fallback)

    def find(self, locale: str) -> LocaleData:
        """The locale's data: its own file, else the first of its fallback chain that has one
        (a locale without a file: its language, then "en")."""
        for key in self.chain(locale):
            data = self._data.get(_normalize_locale(key))
            if data is not None:
                return data
        raise LookupError(f"no locale data for {locale!r} and no {LOCALE_FALLBACK}.yaml")

    def revealing_words(self, locale: str) -> frozenset[str]:
        """The revealing words of every locale file in the locale's chain: a text may fall back
        to any of them."""
        return frozenset(word for key in self.chain(locale)
                         if (data := self._data.get(_normalize_locale(key))) is not None
                         for word in data.revealing_words)

    def languages(self) -> dict[str, Language]:
        """Each usable locale's language block, by locale name: what the language switch offers."""
        return {data.key: data.language for data in sorted(self._data.values(),
                                                           key=lambda data: data.key)}
