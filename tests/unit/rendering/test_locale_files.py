"""The locale files' own checks: each problem names the file, its line and the fix. A crisis block
must give a reader something to reach (a number or a directory of helplines), resources keep their
documented format, and the shipped files pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.rendering.library import TemplateLibrary
from nurture.rendering.locales import Locales
from tests.support.paths import ROOT

NO_HELP = """\
# A locale whose crisis block names nothing to call.
crisis:
  heading: Help
  text: Call someone.
  lines: []
"""
WITH_DIRECTORY = """\
crisis:
  heading: Help
  text: Call your local emergency number.
  lines: []
  directory:
    name: A directory
    url: https://directory.example.net/
"""
WITH_A_LINE = """\
crisis:
  heading: Help
  text: Call someone.
  lines:
    - {name: Line A, contact: '111', note: any time}
"""


def test_a_crisis_block_without_a_number_or_directory_is_refused_with_line_and_fix(
        tmp_path: Path) -> None:
    (tmp_path / "en.yaml").write_text(WITH_DIRECTORY, encoding="utf-8")
    (tmp_path / "fr.yaml").write_text(NO_HELP, encoding="utf-8")
    locales = Locales(tmp_path)
    assert locales.problems == []
    [problem] = locales.rule_problems
    assert (problem.path, problem.line) == (tmp_path / "fr.yaml", 5)
    assert "no number and no directory" in problem.message
    assert "crisis.lines" in problem.fix and "crisis.directory" in problem.fix
    assert str(problem).startswith(f"{tmp_path / 'fr.yaml'}:5: error: ")
    # The file still serves its footer: the check refuses the content, it does not hide the text.
    assert locales.find("fr").crisis.heading == "Help"


@pytest.mark.parametrize("good", [WITH_DIRECTORY, WITH_A_LINE])
def test_a_number_or_a_directory_is_enough(tmp_path: Path, good: str) -> None:
    (tmp_path / "en.yaml").write_text(good, encoding="utf-8")
    locales = Locales(tmp_path)
    assert locales.problems == [] and locales.rule_problems == []


def test_validate_reports_the_empty_crisis_block(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    for name in ("layouts", "locales"):
        (root / name).mkdir(parents=True)
        for path in (ROOT / "templates" / name).iterdir():
            (root / name / path.name).write_bytes(path.read_bytes())
    english = (root / "locales" / "en.yaml").read_text(encoding="utf-8")
    start = english.index("  directory:")
    end = english.index("  framing:")
    (root / "locales" / "en.yaml").write_text(english[:start] + english[end:], encoding="utf-8")
    lines_at = english[:start].splitlines().index("  lines: []") + 1
    problems = TemplateLibrary(root).check_layouts()
    assert [(p.path.name, p.line) for p in problems] == [("en.yaml", lines_at)]


def test_a_malformed_value_points_at_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "en.yaml").write_text(WITH_A_LINE, encoding="utf-8")
    (tmp_path / "de.yaml").write_text(
        "crisis:\n  heading: Hilfe\n  text: Ruf an.\n  lines:\n    - name: A\n      contact: 112\n",
        encoding="utf-8")
    locales = Locales(tmp_path)
    [problem] = locales.problems
    assert (problem.path.name, problem.line) == ("de.yaml", 6)
    assert problem.message == "crisis.lines[0].contact must be text"
    assert problem.fix == "follow the format of locales/en.yaml"


def test_resources_keep_their_format(tmp_path: Path) -> None:
    (tmp_path / "en.yaml").write_text(
        WITH_A_LINE + "resources:\n"
        "  - {title: A, kind: guide, description: One., url: http://plain.example.org/}\n"
        "  - {title: B, kind: podcast, description: Two., url: https://b.example.org/}\n"
        "  - {title: C, kind: guide, url: https://c.example.org/}\n", encoding="utf-8")
    locales = Locales(tmp_path)
    assert [(p.line, p.message, p.fix) for p in locales.rule_problems] == [
        (7, "resources[0].url is not an https address", "link to the https version of the page"),
        (8, "resources[1].kind is 'podcast'", "use article, video or guide"),
        (9, "resources[2] lacks description",
         "give each resource a title, kind, description and url"),
    ]


def test_the_shipped_locale_files_pass_and_each_offers_help() -> None:
    locales = Locales(ROOT / "templates" / "locales")
    assert locales.problems == [] and locales.rule_problems == []
    for key in list(locales.keys()):
        crisis = locales.find(key).crisis
        assert crisis.lines or crisis.directory, key
        assert crisis.framing, f"{key}: the framing shown in every footer"
    india = [line.contact for line in locales.find("en-IN").crisis.lines]
    assert india == ["112", "14490 or 7827170170", "181", "14416 or 1-800-891-4416"]
    english = locales.find("en").crisis
    assert english.directory is not None and english.directory.url == "https://findahelpline.com/"
    assert "your local emergency number" in english.text


def test_the_practice_page_comes_first_and_no_crisis_service_is_a_resource() -> None:
    locales = Locales(ROOT / "templates" / "locales")
    for key in list(locales.keys()):
        resources = locales.find(key).resources
        # The practice's own page leads (its placeholder address until an operator sets one).
        assert resources[0]["url"] == locales.find("en").resources[0]["url"], key
        for item in resources:
            assert not any(word in item["url"] for word in ("telemanas", "nimhans", "helpline"))


def _locales(tmp_path: Path, files: dict[str, str]) -> Locales:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return Locales(tmp_path)


def test_the_language_block_gives_name_tag_direction_and_fallback(tmp_path: Path) -> None:
    locales = _locales(tmp_path, {"en": WITH_A_LINE, "xx-RT": """\
language:
  name: Pseudo right-to-left
  tag: xx
  direction: rtl
  fallback: [en-IN, en]
""" + WITH_A_LINE})
    assert not locales.problems
    language = locales.languages()["xx-RT"]
    assert (language.tag, language.direction) == ("xx", "rtl")
    assert locales.chain("xx-RT") == ("xx-RT", "en-IN", "en")
    assert locales.chain("hi-IN") == ("hi-IN", "hi", "en"), "a locale without a file: its language"
    assert locales.find("xx-RT").key == "xx-RT"
    assert locales.find("zz").key == "en"


@pytest.mark.parametrize(("block", "complaint", "line"), [
    ("language:\n  name: X\n  tag: x\n  direction: sideways\n", "ltr or rtl", 4),
    ("language:\n  name: X\n  tag: x\n  fallback: [en-IN]\n", "must end with en", 4),
    ("language:\n  tag: x\n", "language.name must be text", 1),
])
def test_a_bad_language_block_is_refused_with_its_line(tmp_path: Path, block: str,
                                                      complaint: str, line: int) -> None:
    locales = _locales(tmp_path, {"en": WITH_A_LINE, "xx": block + WITH_A_LINE})
    [problem] = locales.problems
    assert complaint in problem.message and problem.path.name == "xx.yaml"
    assert problem.line == line


def test_the_shipped_locales_name_their_language() -> None:
    languages = Locales(ROOT / "templates" / "locales").languages()
    assert languages["en"].name == "English" and languages["en"].fallback == ()
    assert languages["en-IN"].fallback == ("en",)
