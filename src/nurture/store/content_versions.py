"""Records each content version the services load (hash, time, files), so deliveries can be traced to it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from nurture.store.models import ContentVersion, content_version_table


def record_content_version(engine: Engine, version: str, files: tuple[str, ...],
                           now: datetime) -> bool:
    """Insert the version once; True when it was new to this database.

    Several schedulers load the same files at the same moment: the loser of that race is told the
    version was known, not given an error.
    """
    try:
        with engine.begin() as conn:
            known = conn.execute(
                select(ContentVersion.id).where(ContentVersion.id == version)).first()
            if known is not None:
                return False
            conn.execute(content_version_table.insert().values(id=version, loaded_at=now,
                                                                files=list(files)))
    except IntegrityError:
        return False
    return True


def content_versions(engine: Engine) -> list[tuple[str, datetime, list[str]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ContentVersion.id, ContentVersion.loaded_at, ContentVersion.files)
                            .order_by(ContentVersion.loaded_at)).all()
    return [(row[0], row[1], list(row[2])) for row in rows]
