"""The live content version of the database, written to a local folder for this process to load:
the schedulers and the web app read content kept in the database (NURTURE_CONTENT_SOURCE=database)
through the same loader, checks and reloads as files."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Final

from nurture.content.snapshots import SEQUENCES, TEMPLATES, read_folders, write_files
from nurture.services.content_editing import ContentConflict, ContentEditor, NoContentYet

log = logging.getLogger(__name__)

KEEP_VERSIONS: Final = 3
"""Versions kept on disk behind the newest: a process still sending an older one may read a
template of it lazily."""


class ContentMirror:
    """Writes each new saved version to `folder`/v<number> once, whole, and hands its folders to
    the ContentHolder. A version's folder never changes after it is written."""

    def __init__(self, editor: ContentEditor, folder: Path) -> None:
        self._editor = editor
        self.folder = folder
        self.number: int | None = None

    def sync(self) -> tuple[Path, Path]:
        """The newest version's sequences and templates folders, written first if this host has
        not got them (NoContentYet when the database holds no version)."""
        number = self._editor.store.latest_number()
        if number is None:
            raise NoContentYet
        target = self.folder / f"v{number}"
        if not target.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".v{number}-", dir=self.folder))
            write_files(self._editor.store.files(number), staging)
            try:
                staging.rename(target)
            except OSError:  # another process on this host wrote it first
                shutil.rmtree(staging, ignore_errors=True)
            log.info("content version written", extra={"content_number": number})
            self._forget_old(number)
        self.number = number
        return target / SEQUENCES, target / TEMPLATES

    def _forget_old(self, newest: int) -> None:
        for old in self.folder.glob("v*"):
            number = old.name[1:]
            if number.isdigit() and int(number) < newest - KEEP_VERSIONS:
                shutil.rmtree(old, ignore_errors=True)


def import_if_empty(editor: ContentEditor, sequences_dir: Path, templates_dir: Path) -> None:
    """On a database with no content yet, these folders' files become its first version: the
    first start of a deployment that keeps its content in the database."""
    if editor.store.latest_number() is not None:
        return
    if not sequences_dir.is_dir() or not templates_dir.is_dir():
        raise NoContentYet
    files = read_folders(sequences_dir, templates_dir)
    try:
        editor.save(files, author="system", based_on=None, action="import",
                    note=f"first start: imported {sequences_dir} and {templates_dir}")
    except ContentConflict:
        return  # another process imported them at the same moment
    log.info("content imported into the database", extra={"files": len(files)})
