"""Content as data: the files of sequences/ and templates/ read into a mapping of relative paths to
text, written back to folders, checked as `nurture sequences validate` checks them, and compared
file by file. What the database-backed content store and the browser editor move around."""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from nurture.content.library import Content, check_content, load_content
from nurture.domain.problems import ContentProblem

SEQUENCES: Final = "sequences"
TEMPLATES: Final = "templates"
NOT_CONTENT: Final = (f"{TEMPLATES}/pages/", f"{TEMPLATES}/translations/")
"""The web app's own pages and their translations ship with the product: not a marketer's content."""
MAX_FILE_CHARACTERS: Final = 200_000
MAX_PATH_LENGTH: Final = 300

ContentFiles = Mapping[str, str]
"""Relative POSIX path (`sequences/welcome.yaml`, `templates/emails/x/welcome.md`) to its text."""


class ContentFileError(ValueError):
    """A content file that cannot be stored: a bad path, not UTF-8 text, or too long."""


def is_content_path(path: str) -> bool:
    return ((path.startswith(f"{SEQUENCES}/") and path.endswith(".yaml") and path.count("/") == 1)
            or (path.startswith(f"{TEMPLATES}/") and not path.startswith(NOT_CONTENT)))


def check_path(path: str) -> str:
    """`path` when it can name a content file; else ContentFileError saying what to change."""
    pure = PurePosixPath(path)
    if (not path or len(path) > MAX_PATH_LENGTH or pure.is_absolute() or ".." in pure.parts
            or "\\" in path or any(part.startswith(".") for part in pure.parts)):
        raise ContentFileError(f"'{path[:80]}' is not a content path: use a relative path such "
                               "as templates/emails/welcome.md, without '..' or hidden parts")
    if not is_content_path(path):
        raise ContentFileError(f"'{path[:80]}' is not content: sequences are sequences/NAME.yaml,"
                               " emails and their parts live under templates/ (not pages/ or "
                               "translations/, which ship with the product)")
    return path


def read_files(root: Path) -> dict[str, str]:
    """Every content file under `root` (which holds sequences/ and templates/), by path."""
    return read_folders(root / SEQUENCES, root / TEMPLATES)


def read_folders(sequences_dir: Path, templates_dir: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    found = [(f"{SEQUENCES}/{p.name}", p) for p in sorted(sequences_dir.glob("*.yaml"))]
    found += [(f"{TEMPLATES}/{p.relative_to(templates_dir).as_posix()}", p)
              for p in sorted(templates_dir.rglob("*")) if p.is_file()]
    for name, path in found:
        if not is_content_path(name) or path.suffix == ".mo":
            continue
        try:
            files[name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ContentFileError(f"{path} is not UTF-8 text: content files are text") from None
    return files


def write_files(files: ContentFiles, root: Path) -> tuple[Path, Path]:
    """Write `files` under `root`; returns its sequences and templates folders. The bytes are
    the text's UTF-8 exactly: newlines are not translated."""
    for name, text in files.items():
        target = root / check_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    for folder in (SEQUENCES, TEMPLATES):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root / SEQUENCES, root / TEMPLATES


def check_files(files: ContentFiles) -> list[ContentProblem]:
    """Every problem `nurture sequences validate` would report for these files (errors and
    warnings, the content rules included), each naming its file by its relative path."""
    for name, text in files.items():
        check_path(name)
        if len(text) > MAX_FILE_CHARACTERS:
            raise ContentFileError(f"{name} has {len(text):,} characters; at most "
                                   f"{MAX_FILE_CHARACTERS:,} fit in one content file")
    with tempfile.TemporaryDirectory(prefix="nurture-content-check-") as folder:
        root = Path(folder)
        sequences_dir, templates_dir = write_files(files, root)
        _, _, problems = check_content(sequences_dir, templates_dir, rules=True)
        return [_relative(problem, root) for problem in problems]


@contextmanager
def loaded(files: ContentFiles) -> Iterator[Content]:
    """The files loaded as the scheduler would load them (ContentInvalid when they would be
    refused), for a preview of an edit not saved yet; the files exist while the block runs."""
    with tempfile.TemporaryDirectory(prefix="nurture-content-draft-") as folder:
        sequences_dir, templates_dir = write_files(files, Path(folder))
        yield load_content(sequences_dir, templates_dir)


def _relative(problem: ContentProblem, root: Path) -> ContentProblem:
    try:
        path = Path(problem.path).relative_to(root)
    except ValueError:
        return problem
    return ContentProblem(path, problem.line, problem.message, problem.fix,
                          severity=problem.severity)


@dataclass(frozen=True)
class FileDiff:
    path: str
    change: str
    """added, removed or changed."""
    lines: tuple[str, ...]
    """The unified diff, without the two header lines."""


def diff_files(old: ContentFiles, new: ContentFiles, *, context: int = 3) -> list[FileDiff]:
    """What changed from `old` to `new`, file by file, in path order; equal files are left out."""
    diffs: list[FileDiff] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        change = "added" if before is None else "removed" if after is None else "changed"
        lines = difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                     lineterm="", n=context)
        diffs.append(FileDiff(path, change, tuple(list(lines)[2:])))
    return diffs
