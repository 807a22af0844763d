"""Content kept in the database: numbered versions of the whole content, each file's text stored
once by its hash, and the admin audit log. A save names the version it was edited from, and is
refused when another version was saved since: two editors never overwrite each other silently."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, insert, select
from sqlalchemy.exc import IntegrityError

from nurture.store.models import (
    admin_audit_table,
    content_blob_table,
    content_snapshot_file_table,
    content_snapshot_table,
)

ACTIONS = ("save", "restore", "import")


@dataclass(frozen=True)
class SavedVersion:
    number: int
    saved_at: datetime
    author: str
    action: str
    """save, restore or import."""
    note: str
    based_on: int | None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    action: str
    number: int | None
    detail: str


class ContentConflict(Exception):
    """Another version was saved after the one this edit started from."""

    def __init__(self, based_on: int | None, latest: int) -> None:
        self.based_on, self.latest = based_on, latest
        started = f"version {based_on}" if based_on is not None else "no version"
        super().__init__(f"version {latest} was saved after this edit started from {started}: "
                         "look at what changed, then make your edit on the newest version")


class UnknownVersion(LookupError):
    """No saved version has this number."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SqlContentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def latest(self) -> SavedVersion | None:
        """The live version: the newest saved."""
        with self._engine.connect() as conn:
            number = self._latest_number(conn)
        return None if number is None else self.version(number)

    def latest_number(self) -> int | None:
        with self._engine.connect() as conn:
            return self._latest_number(conn)

    def version(self, number: int) -> SavedVersion:
        table = content_snapshot_table
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.number == number)).first()
        if row is None:
            raise UnknownVersion(f"there is no content version {number}")
        return _saved(row)

    def versions(self, *, limit: int = 200) -> list[SavedVersion]:
        """The newest first."""
        table = content_snapshot_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.number.desc()).limit(limit))
            return [_saved(row) for row in rows]

    def files(self, number: int) -> dict[str, str]:
        """The version's files by path."""
        files, blobs = content_snapshot_file_table, content_blob_table
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(files.c.path, blobs.c.text)
                .join(blobs, blobs.c.sha256 == files.c.sha256)
                .where(files.c.number == number).order_by(files.c.path)).all()
            if not rows and conn.execute(select(content_snapshot_table.c.number).where(
                    content_snapshot_table.c.number == number)).first() is None:
                raise UnknownVersion(f"there is no content version {number}")
        return {path: text for path, text in rows}

    def save(self, files: Mapping[str, str], *, author: str, note: str, based_on: int | None,
             now: datetime, action: str = "save", detail: str = "") -> SavedVersion:
        """Record `files` as the next version, and the audit entry; ContentConflict when the
        newest version is not `based_on`. The caller has validated the files."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        digests = {path: _digest(text) for path, text in files.items()}
        try:
            with self._engine.begin() as conn:
                latest = self._latest_number(conn)
                if latest != based_on:
                    raise ContentConflict(based_on, latest or 0)
                number = (latest or 0) + 1
                # Two saves from the same version race to this insert; the primary key lets
                # one win, and the other is told of the conflict below.
                conn.execute(insert(content_snapshot_table).values(
                    number=number, saved_at=now, author=author, action=action, note=note,
                    based_on=based_on))
                self._store_blobs(conn, files, digests)
                if digests:
                    conn.execute(insert(content_snapshot_file_table), [
                        {"number": number, "path": path, "sha256": digest}
                        for path, digest in sorted(digests.items())])
                conn.execute(insert(admin_audit_table).values(
                    at=now, user=author, action=action, number=number,
                    detail=detail or note))
        except IntegrityError:
            raise ContentConflict(based_on, self.latest_number() or 0) from None
        return SavedVersion(number, now, author, action, note, based_on)

    def audit(self, *, limit: int = 200) -> list[AuditEntry]:
        """The newest first."""
        table = admin_audit_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.id.desc()).limit(limit))
            return [AuditEntry(row.at, row.user, row.action, row.number, row.detail)
                    for row in rows]

    def _latest_number(self, conn: Connection) -> int | None:
        number: int | None = conn.execute(select(func.max(content_snapshot_table.c.number))).scalar()
        return number

    def _store_blobs(self, conn: Connection, files: Mapping[str, str],
                     digests: Mapping[str, str]) -> None:
        wanted = set(digests.values())
        if not wanted:
            return
        known = set(conn.execute(select(content_blob_table.c.sha256).where(
            content_blob_table.c.sha256.in_(wanted))).scalars())
        new = {digests[path]: text for path, text in files.items() if digests[path] not in known}
        if new:
            conn.execute(insert(content_blob_table),
                         [{"sha256": digest, "text": text} for digest, text in new.items()])


def _saved(row: Row[Any]) -> SavedVersion:
    return SavedVersion(row.number, row.saved_at, row.author, row.action, row.note, row.based_on)
