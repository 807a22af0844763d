"""The rendering modules' pieces on their own: Markdown to plain text, personal values in a template's
tree, and the lookup of locale files. The whole emails are tested in test_rendering.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt

from nurture.rendering.analysis import personal_misuse
from nurture.rendering.locales import Locales
from nurture.rendering.text import markdown_to_text

DOCUMENT = """# A heading

A paragraph with a [link](https://example.org/a) and <https://example.org/b>, and
a soft break, then a hard break\\
here. ![a picture](https://example.org/p.png)

- tight one
- tight two
  1. nested first
  2. nested second

3. loose three

4. loose four

> a quote
> - with a list

    indented code
    block

```
fenced
```

---

Last words.
"""
DOCUMENT_TEXT = """A heading

A paragraph with a link (https://example.org/a) and https://example.org/b, and a soft break, \
then a hard break
here. a picture

- tight one
- tight two
  1. nested first
  2. nested second

3. loose three

4. loose four

> a quote

> - with a list

    indented code
    block

    fenced

---

Last words."""


def test_markdown_to_text_gives_each_kind_of_block_its_plain_form() -> None:
    tokens = MarkdownIt("commonmark", {"html": False}).parse(DOCUMENT)
    assert markdown_to_text(tokens, discreet=False) == DOCUMENT_TEXT
    # Discreet mode drops the image's words along with the image.
    assert markdown_to_text(tokens, discreet=True) == DOCUMENT_TEXT.replace("here. a picture", "here. ")


def test_personal_values_may_be_printed_or_tested_and_nothing_else() -> None:
    source = (
        "{{ first_name }}{% if first_name %}a{% elif not email %}b{% else %}{{ email|upper }}{% endif %}\n"
        "{{ first_name if discreet else unsubscribe_url }}{{ (action_url or booked_url) }}"
        "{% if not (first_name and email) %}x{% endif %}\n"
        '{% if first_name == "Bo" %}y{% endif %}{{ preferences_url ~ "x" }}{% set z = email %}'
        "{{ 'a' if not first_name else 'b' }}"
    )
    ast = ImmutableSandboxedEnvironment().parse(source)
    assert personal_misuse(ast) == [
        ("email", 1),
        ("first_name", 3),
        ("preferences_url", 3),
        ("email", 3),
    ]


CRISIS = "crisis:\n  heading: Help\n  text: Call someone.\n  lines: []\n"


def test_locales_match_exactly_then_by_language_then_fall_back_to_en(tmp_path: Path) -> None:
    (tmp_path / "en.yaml").write_text(CRISIS, encoding="utf-8")
    (tmp_path / "en-IN.yaml").write_text(CRISIS, encoding="utf-8")
    (tmp_path / "fr.yaml").write_text(CRISIS, encoding="utf-8")
    (tmp_path / "de.yaml").write_text("crisis: [", encoding="utf-8")
    locales = Locales(tmp_path)
    assert locales.keys() == ["en", "en-IN", "fr"]
    assert locales.find("en_in").key == "en-IN"
    assert locales.find("fr-CA").key == "fr"
    assert locales.find("de").key == "en"
    assert [(p.path.name, p.line) for p in locales.problems] == [("de.yaml", 1)]


def test_without_en_every_unknown_locale_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "fr.yaml").write_text(CRISIS, encoding="utf-8")
    locales = Locales(tmp_path)
    assert [p.message for p in locales.problems] == ["the fallback locale file is missing or invalid"]
    with pytest.raises(LookupError):
        locales.find("de")
