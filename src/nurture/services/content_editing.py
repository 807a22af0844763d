"""Editing content kept in the database: check an edit as validate would, save it as the next
version (never when invalid, never over a version saved meanwhile), restore an old version as a
new one, and import or export the whole content as files."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nurture.content.snapshots import (
    FileDiff,
    check_files,
    check_path,
    diff_files,
    read_files,
    write_files,
)
from nurture.domain.problems import ContentProblem, Severity
from nurture.store.content_snapshots import ContentConflict, SavedVersion, SqlContentStore

__all__ = ["ContentConflict", "ContentEditor", "EditRefused", "NoContentYet"]


class EditRefused(Exception):
    """The content would not validate: nothing was saved."""

    def __init__(self, problems: list[ContentProblem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity is Severity.ERROR]
        super().__init__(f"nothing was saved: {len(errors)} error(s)\n"
                         + "\n".join(str(p) for p in errors))


class NoContentYet(LookupError):
    """The database holds no content version yet."""

    def __init__(self) -> None:
        super().__init__("the database holds no content yet: run `nurture content import DIR` "
                         "with a folder holding sequences/ and templates/")


@dataclass(frozen=True)
class LiveContent:
    version: SavedVersion
    files: dict[str, str]


class ContentEditor:
    def __init__(self, store: SqlContentStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

    def live(self) -> LiveContent:
        version = self.store.latest()
        if version is None:
            raise NoContentYet
        return LiveContent(version, self.store.files(version.number))

    def check(self, files: Mapping[str, str]) -> list[ContentProblem]:
        """Every problem validate reports for these files, errors and warnings."""
        return check_files(files)

    def edited(self, based_on: int, path: str, text: str) -> dict[str, str]:
        """Version `based_on`'s files with `path` holding `text` (a new file when it had none)."""
        files = self.store.files(based_on)
        files[check_path(path)] = text
        return files

    def save(self, files: Mapping[str, str], *, author: str, note: str, based_on: int | None,
             action: str = "save") -> SavedVersion:
        """The next version, when the files validate and nothing was saved since `based_on`.
        Raises EditRefused or ContentConflict; either way nothing is saved."""
        latest = self.store.latest_number()
        if latest != based_on:
            raise ContentConflict(based_on, latest or 0)
        problems = check_files(files)
        if any(p.severity is Severity.ERROR for p in problems):
            raise EditRefused(problems)
        return self.store.save(files, author=author, note=note.strip(), based_on=based_on,
                               now=self._clock(), action=action)

    def restore(self, number: int, *, author: str, based_on: int | None) -> SavedVersion:
        """Version `number`'s files saved again as the newest version (checked again: the rules
        may have changed since it was saved)."""
        return self.save(self.store.files(number), author=author, based_on=based_on,
                         note=f"restored version {number}", action="restore")

    def diff(self, old: int, new: int) -> list[FileDiff]:
        return diff_files(self.store.files(old), self.store.files(new))

    def import_folder(self, root: Path, *, author: str) -> SavedVersion | None:
        """The files under `root` (sequences/ and templates/) as the next version; None when
        they equal the live version's."""
        files = read_files(root)
        latest = self.store.latest_number()
        if latest is not None and self.store.files(latest) == files:
            return None
        return self.save(files, author=author, based_on=latest, action="import",
                         note=f"imported from {root.name or root}")

    def export_folder(self, root: Path, number: int | None = None) -> SavedVersion:
        """Version `number` (the live one by default) written under `root`."""
        version = self.store.latest() if number is None else self.store.version(number)
        if version is None:
            raise NoContentYet
        files = self.store.files(version.number)
        write_files(files, root)
        # The folder ends up equal to the version, so that a review in git sees removals too.
        for path in set(read_files(root)) - set(files):
            (root / path).unlink()
        return version
