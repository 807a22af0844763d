"""The safety note that steps asking the reader to talk to their partner must carry: a step marked
`asks_to_talk: true` has its template include the shared partial, outside any condition, so that an
edit cannot drop the note for anyone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2
from jinja2 import nodes

from nurture.domain.model import Sequence, Step
from nurture.domain.problems import ContentProblem
from nurture.rendering.translations import Translations, is_locale_body, without_front_matter

# The partial, by its name under templates/ (a Markdown body includes the .md one).
TALK_SAFETY_PARTIAL: Final = "emails/partials/talk-safety.md"
_PARSER: Final = jinja2.Environment(autoescape=False)


def _partial_for(step: Step) -> str:
    suffix = Path(step.template).suffix or ".md"
    return str(Path(TALK_SAFETY_PARTIAL).with_suffix(suffix))


def _includes(node: nodes.Node, partial: str) -> bool:
    """Whether the node includes the partial, or a locale's version of it
    (emails/partials/hi-IN/talk-safety.md for emails/partials/talk-safety.md)."""
    if not (isinstance(node, nodes.Include) and isinstance(node.template, nodes.Const)):
        return False
    name = str(node.template.value)
    folder, _, file = partial.rpartition("/")
    head, _, tail = name.rpartition("/")
    return name == partial or (tail == file and head.rpartition("/")[0] == folder)


def _check_step(sequence: Sequence, step: Step, templates_dir: Path) -> ContentProblem | None:
    partial = _partial_for(step)
    include = f'{{% include "{partial}" %}}'
    path = templates_dir / "emails" / step.template
    try:
        tree = _PARSER.parse(without_front_matter(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
        return None  # the template checks report a missing or broken template
    if any(_includes(node, partial) for node in tree.body):
        return None
    nested = next((node for node in tree.find_all(nodes.Include) if _includes(node, partial)), None)
    if nested is not None:
        return ContentProblem(
            path,
            nested.lineno,
            f"step '{step.key}' asks the reader to talk to their partner, but the safety note is "
            "included inside a condition, so some readers would not get it",
            f"move {include} out of the {{% if %}} or {{% for %}} block, so that everyone gets it",
        )
    # A locale's body is its own file; the default one is named at the step in the sequence file.
    where = (path, 1) if is_locale_body(f"emails/{step.template}") else (sequence.source, step.line)
    return ContentProblem(
        *where,
        f"step '{step.key}' asks the reader to talk to their partner (asks_to_talk: true), but its "
        f"template {step.template} does not include the safety note",
        f"add {include} on a line of its own in templates/emails/{step.template}, next to where "
        "it suggests the talk",
    )


def check_talk_safety(sequences: Mapping[str, Sequence], templates_dir: Path,
                      translations: Translations | None = None) -> list[ContentProblem]:
    """A problem for each step marked `asks_to_talk` whose template, default or per locale, does
    not include the safety note for every reader."""
    steps = [(sequences[key], version) for key in sorted(sequences) for step in sequences[key].steps
             for version in step.versions()]
    for text in translations.texts() if translations is not None else []:
        sequence = sequences.get(text.sequence)
        step = sequence.step(text.step) if sequence is not None else None
        if sequence is not None and step is not None:
            steps.append((sequence, dataclasses.replace(step, template=text.template)))
    problems: list[ContentProblem] = []
    for sequence, step in steps:
        if step.asks_to_talk:
            problem = _check_step(sequence, step, templates_dir)
            if problem is not None:
                problems.append(problem)
    return problems
