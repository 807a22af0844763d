"""Warnings for marketers: unreachable steps, repeated subjects, a first email that makes someone
who just confirmed wait for the send window, http links, images without alt text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from nurture.domain.model import Condition, Sequence
from nurture.domain.problems import ContentProblem, Severity

_HTTP_LINK = re.compile(r"""(?:href\s*=\s*["']|\]\()\s*(http://[^\s"')]+)""", re.IGNORECASE)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*["'][^"']+["']""", re.IGNORECASE)
_MD_IMAGE_NO_ALT = re.compile(r"!\[\s*\]\(")


def _warning(path: Path, line: int, message: str, fix: str) -> ContentProblem:
    return ContentProblem(path, line, message, fix, Severity.WARNING)


def never_matches(condition: Condition) -> bool:
    """True when no profile can satisfy the condition (a step nobody would ever receive)."""
    if condition.hesitations_all & condition.hesitations_none:
        return True
    return bool(condition.hesitations_any) and condition.hesitations_any <= condition.hesitations_none


def check_sequence_warnings(sequence: Sequence) -> list[ContentProblem]:
    problems: list[ContentProblem] = []
    seen_subjects: dict[str, str] = {}
    for step in sequence.steps:
        if step.when is not None and never_matches(step.when):
            problems.append(_warning(sequence.source, step.line,
                                     f"step '{step.key}' can never be reached: its condition "
                                     f"({step.when.describe()}) contradicts itself",
                                     "remove the reasons that appear both required and excluded"))
        subject = " ".join(step.subject.split()).lower()
        if subject in seen_subjects:
            problems.append(_warning(sequence.source, step.line,
                                     f"step '{step.key}' has the same subject as step "
                                     f"'{seen_subjects[subject]}'",
                                     "give each email its own subject so people can tell them apart"))
        else:
            seen_subjects[subject] = step.key
    return problems


def check_first_step_waits(sequence: Sequence) -> list[ContentProblem]:
    """For a sequence a confirmation starts: a warning when its first email waits for the window.

    The person has just pressed the confirm button, so they are there now; at 07:00 a 09:00
    window makes them wait two hours for the email they asked for."""
    if not sequence.steps or sequence.window.always_open:
        return []
    first = sequence.steps[0]
    if first.immediate:
        return []
    window = f"{sequence.window.start:%H:%M}-{sequence.window.end:%H:%M}"
    return [_warning(sequence.source, first.line,
                     f"step '{first.key}' is the first email after confirming, and it waits for "
                     f"the send window ({window}): someone who confirms outside it waits hours "
                     "for the email they just asked for",
                     "add `immediate: true` to this step: it then goes out at once after "
                     "confirming, and the window applies from the next step on")]


def check_template_warnings(templates_dir: Path) -> list[ContentProblem]:
    problems: list[ContentProblem] = []
    for path in sorted(templates_dir.rglob("*")):
        if path.suffix not in (".md", ".html", ".txt") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in _HTTP_LINK.finditer(line):
                problems.append(_warning(path, number, f"link {match.group(1)} is not https",
                                         "use the https:// address of the page"))
            for tag in _IMG_TAG.findall(line):
                if not _ALT.search(tag):
                    problems.append(_warning(path, number, "image without alt text",
                                             'add alt="..." describing the image for screen readers'))
            if _MD_IMAGE_NO_ALT.search(line):
                problems.append(_warning(path, number, "image without alt text",
                                         "write ![what the image shows](url)"))
    return problems


def check_warnings(sequences: Mapping[str, Sequence], templates_dir: Path, *,
                   confirmation_starts: frozenset[str] = frozenset()) -> list[ContentProblem]:
    """`confirmation_starts`: the keys of the sequences a confirmation can start."""
    problems: list[ContentProblem] = []
    for sequence in sequences.values():
        problems += check_sequence_warnings(sequence)
        if sequence.key in confirmation_starts:
            problems += check_first_step_waits(sequence)
    return problems + check_template_warnings(templates_dir)
