"""Reads the per-locale email texts (templates/emails/<sequence>/<locale>/<step>.md and their
front matter) and checks that a locale covers every step and subject line of each sequence it has a
folder for; the coverage table `nurture sequences validate` prints."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, ScalarNode

from nurture.domain.model import Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.rendering.translations import (
    DEFAULT_TEXT_LOCALE,
    LOCALE_FOLDER,
    SUBJECT_FIELDS,
    StepText,
    Translations,
    front_matter_lines,
    with_texts,
)

_PARTIALS: Final = "partials"
_FRONT_MATTER_FIX: Final = ('start the file with the subject lines between two `---` lines:\n'
                            '---\nsubject: "..."\npreheader: "..."\ndiscreet_subject: "..."\n'
                            'discreet_preheader: "..."\n---')


def default_fields(step: Step) -> tuple[str, ...]:
    """The subject lines the default text of a step has, which each locale must give too."""
    return tuple(field for field in SUBJECT_FIELDS if getattr(step, field) not in (None, ""))


def _read_front_matter(path: Path, source: str, problems: list[ContentProblem]
                       ) -> tuple[dict[str, str], dict[str, int]] | None:
    count = front_matter_lines(source)
    if count == 0:
        problems.append(ContentProblem(path, 1, "the file has no subject lines (front matter)",
                                       _FRONT_MATTER_FIX))
        return None
    text = "\n".join(source.split("\n")[1 : count - 1])
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 2 if error.problem_mark is not None else 1
        problems.append(ContentProblem(path, line, f"the subject lines are not valid YAML "
                                       f"({error.problem})", 'quote each value: subject: "..."'))
        return None
    if not isinstance(root, MappingNode):
        problems.append(ContentProblem(path, 1, "the front matter must be `name: value` lines",
                                       _FRONT_MATTER_FIX))
        return None
    fields: dict[str, str] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        name, line = str(key_node.value), key_node.start_mark.line + 2
        if name not in SUBJECT_FIELDS:
            problems.append(ContentProblem(path, line, f"unknown field '{name}' in the front matter",
                                           f"use one of: {', '.join(SUBJECT_FIELDS)}"))
        elif not isinstance(value_node, ScalarNode) or not str(value_node.value).strip():
            problems.append(ContentProblem(path, line, f"'{name}' must be a non-empty text",
                                           f'give it a value: {name}: "..."'))
        else:
            fields[name], lines[name] = str(value_node.value), line
    return fields, lines


def _read_step_file(path: Path, sequence: Sequence, locale: str, templates_dir: Path,
                    problems: list[ContentProblem], gap: Severity) -> StepText | None:
    step = sequence.step(path.stem)
    folder = path.parent.relative_to(templates_dir).as_posix()
    if step is None:
        keys = [s.key for s in sequence.steps]
        close = difflib.get_close_matches(path.stem, keys, n=1)
        hint = f"rename it to {close[0]}{path.suffix}" if close else "remove it"
        problems.append(ContentProblem(path, 0, f"sequence '{sequence.key}' has no step "
                                       f"'{path.stem}'", f"{hint} (steps: {', '.join(keys)})",
                                       gap))
        return None
    suffix = Path(step.template).suffix
    if path.suffix != suffix:
        problems.append(ContentProblem(path, 0, f"the default text of step '{step.key}' is a "
                                       f"{suffix} file", f"name it {folder}/{step.key}{suffix}"))
        return None
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(ContentProblem(path, 0, "the file is not UTF-8 text", "save it as UTF-8"))
        return None
    read = _read_front_matter(path, source, problems)
    if read is None:
        return None
    fields, lines = read
    for field in default_fields(step):
        if field not in fields:
            problems.append(ContentProblem(
                path, 1, f"{locale} lacks the {field} of step '{step.key}', which the default "
                f"has ({sequence.source.name} line {step.line})",
                f'add `{field}: "..."` to the front matter, written in {locale}', gap))
    return StepText(locale=locale, sequence=sequence.key, step=step.key,
                    template=f"{path.relative_to(templates_dir / 'emails').as_posix()}",
                    path=path, fields=fields, lines=lines)


def _read_locale_folder(folder: Path, sequence: Sequence, templates_dir: Path,
                        problems: list[ContentProblem], gap: Severity) -> list[StepText]:
    locale = folder.name
    texts = [text for path in sorted(folder.iterdir()) if path.is_file()
             if (text := _read_step_file(path, sequence, locale, templates_dir, problems, gap))]
    have = {text.step for text in texts} | {p.stem for p in folder.iterdir() if p.is_file()}
    relative = folder.relative_to(templates_dir).as_posix()
    for step in sequence.steps:
        if step.key not in have:
            suffix = Path(step.template).suffix
            problems.append(ContentProblem(
                folder, 0, f"{locale} lacks step '{step.key}' of sequence '{sequence.key}', which "
                f"the default has", f"write templates/{relative}/{step.key}{suffix} (body and "
                f"subject lines), or remove the folder to send {locale} readers the default texts",
                gap))
    return texts


def load_texts(templates_dir: Path, sequences: Mapping[str, Sequence], *, strict: bool = True
               ) -> tuple[Translations, list[ContentProblem]]:
    """Every per-locale text under templates/emails/, with the problems of each file.

    A gap in a locale's coverage (a step or subject line missing, a file for a step the
    sequence lacks) is an error when `strict` (validate), else a warning: the running system
    sends the default text instead and logs it, rather than refuse an English edit whose
    translation is still on its way."""
    gap = Severity.ERROR if strict else Severity.WARNING
    problems: list[ContentProblem] = []
    texts: list[StepText] = []
    folders: dict[str, set[str]] = {}
    emails = templates_dir / "emails"
    for sequence_dir in sorted(p for p in emails.glob("*") if p.is_dir() and p.name != _PARTIALS):
        for folder in sorted(p for p in sequence_dir.iterdir() if p.is_dir()):
            sequence = sequences.get(sequence_dir.name)
            if not LOCALE_FOLDER.match(folder.name):
                problems.append(ContentProblem(folder, 0, f"'{folder.name}' is not a locale name",
                                               "name the folder after a locale, e.g. hi-IN"))
            elif sequence is None:
                # A warning, as for the default templates: a templates folder may serve a
                # sequences folder that leaves some sequences out.
                problems.append(ContentProblem(
                    folder, 0, f"there is no sequence '{sequence_dir.name}': these {folder.name} "
                    "texts are not used", f"name the folder after a sequence key: emails/"
                    f"<sequence>/{folder.name}/ (sequences: {', '.join(sorted(sequences))})",
                    Severity.WARNING))
            else:
                folders.setdefault(sequence.key, set()).add(folder.name)
                texts += _read_locale_folder(folder, sequence, templates_dir, problems, gap)
    return Translations(texts, {k: frozenset(v) for k, v in folders.items()}), problems


def localized_steps(sequences: Mapping[str, Sequence], translations: Translations
                    ) -> list[tuple[Sequence, Step, StepText]]:
    """Each per-locale text as the step it makes (missing subject lines: the default's)."""
    found: list[tuple[Sequence, Step, StepText]] = []
    for text in translations.texts():
        sequence = sequences.get(text.sequence)
        step = sequence.step(text.step) if sequence is not None else None
        if sequence is not None and step is not None:
            found.append((sequence, with_texts(step, text.template, text.fields), text))
    return found


# ---------------------------------------------------------------------------------------------
# The coverage table


def _cell(sequence: Sequence, locale: str, translations: Translations) -> tuple[str, list[str]]:
    """A table cell ("5/8") and the missing texts it stands for."""
    total = len(sequence.steps)
    if locale == DEFAULT_TEXT_LOCALE:
        return f"{total}/{total}", []
    if locale not in translations.folders.get(sequence.key, frozenset()):
        return "-", []
    missing: list[str] = []
    complete = 0
    for step in sequence.steps:
        text = translations.get(sequence.key, step.key, locale)
        if text is None:
            missing.append(step.key)
            continue
        lacking = [field for field in default_fields(step) if field not in text.fields]
        missing += [f"{step.key} ({field})" for field in lacking]
        complete += not lacking
    return f"{complete}/{total}" + (" MISSING" if missing else ""), missing


def coverage_table(sequences: Mapping[str, Sequence], translations: Translations,
                   locale_files: list[str], chain: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Lines of the table: one row per sequence, one column per locale with texts, each cell the
    steps that have a body and every subject line the default has; then what is missing."""
    locales = [DEFAULT_TEXT_LOCALE, *sorted(translations.locales - {DEFAULT_TEXT_LOCALE})]
    headers = ["sequence", *(f"{loc} (default)" if loc == DEFAULT_TEXT_LOCALE else loc
                             for loc in locales)]
    rows: list[list[str]] = []
    notes: list[str] = []
    for key in sorted(sequences):
        cells = [_cell(sequences[key], locale, translations) for locale in locales]
        rows.append([key, *(cell for cell, _ in cells)])
        notes += [f"  {locale} lacks in {key}: {', '.join(missing)}"
                  for locale, (_, missing) in zip(locales, cells, strict=True) if missing]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["email texts per locale (steps with a body and every subject line / steps):"]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in [headers, *rows]]
    lines.append("  (- no folder: that locale's readers get the default texts, and it is logged)")
    for locale in locale_files:
        if locale not in locales:
            reads = translations.text_locale(chain.get(locale, (locale,)))
            lines.append(f"  {locale} has no texts of its own: its readers get the {reads} texts")
    return lines + notes
