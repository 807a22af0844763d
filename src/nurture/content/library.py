"""One loaded, validated version of the content (sequences/ and templates/), identified by a hash."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from nurture.content.experiments import check_experiments
from nurture.content.rules import check_rules
from nurture.content.safety import check_talk_safety
from nurture.content.selection import confirmation_sequences
from nurture.content.sequences import load_sequence_file
from nurture.content.translations import load_texts, localized_steps
from nurture.content.warnings import check_warnings
from nurture.domain.model import Sequence, Step
from nurture.domain.problems import ContentInvalid, ContentProblem, Severity
from nurture.rendering.library import TemplateLibrary

log = logging.getLogger(__name__)

# Files in sequences/ that configure sequences rather than define one.
NOT_SEQUENCES = frozenset({"selection.yaml"})


@dataclass(frozen=True)
class Content:
    version: str
    sequences: Mapping[str, Sequence]
    library: TemplateLibrary
    files: tuple[str, ...]
    warnings: tuple[ContentProblem, ...] = field(default=())
    confirmation_starts: frozenset[str] = frozenset()
    """The sequences a confirmation can start (sequences/selection.yaml): their first step may
    go out at once after confirming."""

    @cached_property
    def experiments(self) -> tuple[tuple[Sequence, Step], ...]:
        """The steps under an experiment, in sequence and step order."""
        return tuple((self.sequences[key], step) for key in sorted(self.sequences)
                     for step in self.sequences[key].steps if step.experiment is not None)

    def sequence(self, key: str) -> Sequence:
        try:
            return self.sequences[key]
        except KeyError:
            known = ", ".join(sorted(self.sequences)) or "none"
            raise UnknownSequence(f"there is no sequence '{key}' (known: {known})") from None


class UnknownSequence(LookupError):
    """A command named a sequence key that no file in sequences/ defines."""


def content_files(sequences_dir: Path, templates_dir: Path) -> list[Path]:
    files = [p for p in sorted(sequences_dir.glob("*.yaml")) if p.is_file()]
    files += [p for p in sorted(templates_dir.rglob("*")) if p.is_file()]
    return files


def content_version(sequences_dir: Path, templates_dir: Path) -> tuple[str, tuple[str, ...]]:
    """A short hash of every content file's name and bytes: equal content, equal version. Names
    are taken under `sequences/` and `templates/` wherever the folders are, so that hosts holding
    the same content in different places agree on its version."""
    digest = hashlib.sha256()
    names = []
    for path in content_files(sequences_dir, templates_dir):
        if path.is_relative_to(sequences_dir):
            name = f"sequences/{path.relative_to(sequences_dir).as_posix()}"
        else:
            name = f"templates/{path.relative_to(templates_dir).as_posix()}"
        names.append(name)
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16], tuple(names)


def _missing_folders(sequences_dir: Path, templates_dir: Path) -> list[ContentProblem]:
    problems: list[ContentProblem] = []
    if not sequences_dir.is_dir():
        problems.append(ContentProblem(sequences_dir, 0, "the sequences folder does not exist",
                                       "create it or set NURTURE_SEQUENCES_DIR"))
    if not templates_dir.is_dir():
        problems.append(ContentProblem(templates_dir, 0, "the templates folder does not exist",
                                       "create it or set NURTURE_TEMPLATES_DIR"))
    return problems


def _load_sequences(sequences_dir: Path, problems: list[ContentProblem]) -> dict[str, Sequence]:
    """Every sequence file that loads, by key; the problems of all of them go to `problems`."""
    for path in sorted(sequences_dir.glob("*.yml")):
        problems.append(ContentProblem(path, 0, "sequence files must end in .yaml",
                                       f"rename it to {path.stem}.yaml"))
    sequences: dict[str, Sequence] = {}
    for path in sorted(sequences_dir.glob("*.yaml")):
        if path.name in NOT_SEQUENCES:
            continue
        sequence, found = load_sequence_file(path)
        problems.extend(found)
        if sequence is not None:
            sequences[sequence.key] = sequence
    return sequences


def _check_templates(library: TemplateLibrary, sequences: Mapping[str, Sequence]) -> list[ContentProblem]:
    problems = library.check_layouts()
    for sequence in sequences.values():
        for step in sequence.steps:
            for version in step.versions():
                problems.extend(library.check_step(sequence, version))
    for sequence, step, text in localized_steps(sequences, library.translations):
        problems.extend(library.check_step(sequence, step, where=(text.path, 1),
                                           locales=(text.locale,)))
    return problems


def _check_follow_ups(sequences: Mapping[str, Sequence]) -> list[ContentProblem]:
    return [
        ContentProblem(sequence.source, 0, f"follow_up for {event} names '{target}', which is not a sequence",
                       f"create sequences/{target}.yaml or fix the key")
        for sequence in sequences.values()
        for event, target in sequence.follow_ups
        if target not in sequences or target == "system"
    ]


def check_content(sequences_dir: Path, templates_dir: Path, *, rules: bool = True,
                  strict_locales: bool = True
                  ) -> tuple[dict[str, Sequence], TemplateLibrary | None, list[ContentProblem]]:
    """Every problem of every file, errors and warnings, without raising.

    `rules` adds the content rules (footer, discreet words, booking, readability), which render
    every step and so cost a second or two; validate and the scheduler's live reloads run them.
    """
    problems = _missing_folders(sequences_dir, templates_dir)
    if problems:
        return {}, None, problems
    sequences = _load_sequences(sequences_dir, problems)
    translations, found = load_texts(templates_dir, sequences, strict=strict_locales)
    problems.extend(found)
    library = TemplateLibrary(templates_dir, translations=translations)
    problems.extend(_check_templates(library, sequences))
    problems.extend(check_talk_safety(sequences, templates_dir, library.translations))
    problems.extend(check_warnings(sequences, templates_dir,
                                   confirmation_starts=confirmation_sequences(sequences_dir)))
    if rules and not any(p.severity is Severity.ERROR for p in problems):
        problems.extend(check_rules(sequences, library))
    problems.extend(_check_follow_ups(sequences))
    problems.extend(check_experiments(sequences))
    return sequences, library, problems



def load_content(sequences_dir: Path, templates_dir: Path, *, rules: bool = False) -> Content:
    """Load and validate all content; any error refuses the whole version (ContentInvalid)."""
    version, files = content_version(sequences_dir, templates_dir)
    # A locale's missing step is validate's error, but at run time its readers get the default
    # text (logged) rather than the whole edit being refused.
    sequences, library, problems = check_content(sequences_dir, templates_dir, rules=rules,
                                                 strict_locales=False)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors or library is None:
        raise ContentInvalid(problems)
    if not sequences:
        raise ContentInvalid([ContentProblem(sequences_dir, 0, "there is no sequence",
                                             "add a .yaml file; see sequences/sample.yaml")])
    warnings = tuple(p for p in problems if p.severity is Severity.WARNING)
    return Content(version=version, sequences=sequences, library=library, files=files,
                   warnings=warnings, confirmation_starts=confirmation_sequences(sequences_dir))


class ContentHolder:
    """Keeps the last good content; a reload that fails validation is refused whole and logged.

    The one place where content is reloaded: the scheduler's job calls `refresh`, the web app and the
    admin pages call `fresh` on their requests. Safe to share between threads.
    """

    def __init__(self, sequences_dir: Path, templates_dir: Path, *, rules: bool = False,
                 monotonic: Callable[[], float] = time.monotonic,
                 sync: Callable[[], tuple[Path, Path]] | None = None) -> None:
        # Content kept elsewhere (the database) is written to folders of its own for each
        # version: `sync` writes the newest and says which, before each look at the files.
        self._sync = sync
        if sync is not None:
            sequences_dir, templates_dir = sync()
        self.sequences_dir = sequences_dir
        self.templates_dir = templates_dir
        self.rules = rules
        self._current = load_content(sequences_dir, templates_dir, rules=rules)
        self.last_refused: ContentInvalid | None = None
        self._monotonic = monotonic
        # The first `fresh` call looks at the files: the holder may have been built long before.
        self._checked_at = -math.inf
        self._lock = threading.Lock()

    def __call__(self) -> Content:
        return self._current

    @property
    def current(self) -> Content:
        return self._current

    def fresh(self, max_age_seconds: float) -> Content:
        """The current content, after looking at the files if that was last done longer ago than
        `max_age_seconds`: marketers edit files and reload a page."""
        if self._monotonic() - self._checked_at >= max_age_seconds:
            self.refresh()
        return self._current

    def refresh(self) -> bool:
        """Look at the files now; True when a new version took over. Never raises: whatever goes
        wrong is logged and the last good version stays."""
        with self._lock:
            self._checked_at = self._monotonic()
            try:
                return self.reload_if_changed()
            except Exception:
                log.exception("content reload failed; the last good version stays")
                return False

    def reload_if_changed(self) -> bool:
        """Load the files again if their hash changed; True when a new version took over."""
        if self._sync is not None:
            self.sequences_dir, self.templates_dir = self._sync()
        version, _ = content_version(self.sequences_dir, self.templates_dir)
        if version == self._current.version:
            return False
        if self.last_refused is not None and getattr(self.last_refused, "version", None) == version:
            return False
        try:
            content = load_content(self.sequences_dir, self.templates_dir, rules=self.rules)
        except ContentInvalid as refused:
            refused.version = version  # type: ignore[attr-defined]
            self.last_refused = refused
            for problem in refused.problems:
                log.error("content refused", extra={"version": version, "problem": str(problem)})
            return False
        log.info("content loaded", extra={"version": content.version,
                                          "previous": self._current.version})
        self._current = content
        self.last_refused = None
        return True
