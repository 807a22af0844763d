"""The locale files of templates/locales/: the crisis footer, resources and booking link per locale,
read and checked, and the lookup from a subscriber's locale to the file that serves it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import yaml

from nurture.domain.problems import ContentProblem
from nurture.rendering.types import CrisisDirectory, CrisisInfo, CrisisLine, LocaleData

LOCALE_FALLBACK: Final = "en"


class LocaleError(Exception):
    """A locale file that cannot be used, with the line to look at."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _string(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key, None if required else "")
    if not isinstance(value, str):
        raise LocaleError(f"{where}.{key} must be text")
    return value


def parse_crisis(crisis: object) -> CrisisInfo:
    """The `crisis` section of a locale file (heading, text, lines of name, contact, note)."""
    if not isinstance(crisis, dict):
        raise LocaleError("'crisis' must be a mapping with heading, text and lines")
    lines_raw = crisis.get("lines", [])
    if not isinstance(lines_raw, list):
        raise LocaleError("crisis.lines must be a list")
    lines: list[CrisisLine] = []
    for index, entry in enumerate(lines_raw):
        where = f"crisis.lines[{index}]"
        if not isinstance(entry, dict):
            raise LocaleError(f"{where} must be a mapping with name, contact and note")
        lines.append(
            CrisisLine(
                name=_string(entry, "name", where),
                contact=_string(entry, "contact", where),
                note=_string(entry, "note", where, required=False),
            )
        )
    return CrisisInfo(
        heading=_string(crisis, "heading", "crisis"),
        text=_string(crisis, "text", "crisis"),
        lines=tuple(lines),
        directory=_parse_directory(crisis.get("directory")),
        framing=_string(crisis, "framing", "crisis", required=False),
    )


def _parse_directory(directory: object) -> CrisisDirectory | None:
    """`crisis.directory`: a directory of helplines (name and https url), or nothing."""
    if directory is None:
        return None
    if not isinstance(directory, dict):
        raise LocaleError("crisis.directory must be a mapping with name and url")
    url = _string(directory, "url", "crisis.directory")
    if not url.startswith("https://"):
        raise LocaleError("crisis.directory.url must be an https address")
    return CrisisDirectory(name=_string(directory, "name", "crisis.directory"), url=url)


def _is_text_mapping(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _parse_resources(resources_raw: object) -> tuple[Mapping[str, str], ...]:
    if not isinstance(resources_raw, list):
        raise LocaleError("'resources' must be a list")
    resources: list[Mapping[str, str]] = []
    for index, entry in enumerate(resources_raw):
        if not _is_text_mapping(entry):
            raise LocaleError(f"resources[{index}] must be a mapping of text values")
        resources.append(MappingProxyType(dict(entry)))
    return tuple(resources)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise LocaleError(f"not valid YAML: {error.problem}", (mark.line + 1) if mark else 1) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise LocaleError(f"cannot read the file: {error}") from None


def _parse_locale(key: str, path: Path) -> LocaleData:
    """One locale file; LocaleError says what is wrong and on which line."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise LocaleError("the file must be a mapping with 'crisis' and 'resources'")
    info = parse_crisis(raw.get("crisis"))
    resources = _parse_resources(raw.get("resources", []))
    booking_raw = raw.get("booking", {})
    if not _is_text_mapping(booking_raw):
        raise LocaleError("'booking' must be a mapping with url and label")
    return LocaleData(key=key, crisis=info, resources=resources, path=path,
                      booking=MappingProxyType(dict(booking_raw)))


def _normalize_locale(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


class Locales:
    """The usable locale files of one templates folder, and the problems of the others."""

    def __init__(self, directory: Path) -> None:
        self._data: dict[str, LocaleData] = {}
        self.problems: list[ContentProblem] = []
        for path in sorted(directory.glob("*.yaml")):
            try:
                data = _parse_locale(path.stem, path)
            except LocaleError as error:
                self.problems.append(
                    ContentProblem(path, error.line, str(error), "follow the format of locales/en.yaml")
                )
                continue
            self._data[_normalize_locale(path.stem)] = data
        if LOCALE_FALLBACK not in self._data:
            self.problems.append(
                ContentProblem(
                    directory / "en.yaml",
                    0,
                    "the fallback locale file is missing or invalid",
                    "create locales/en.yaml with the generic crisis footer",
                )
            )

    def keys(self) -> list[str]:
        """The file names (without ".yaml") of the usable locale files, sorted."""
        return sorted({data.key for data in self._data.values()})

    def find(self, locale: str) -> LocaleData:
        """The locale's data: exact match ("en-IN"), then its language ("en"), then "en"."""
        wanted = _normalize_locale(locale)
        for key in (wanted, wanted.split("-", 1)[0], LOCALE_FALLBACK):
            data = self._data.get(key)
            if data is not None:
                return data
        raise LookupError(f"no locale data for {locale!r} and no {LOCALE_FALLBACK}.yaml")
