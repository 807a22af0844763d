"""One scheduler per SQLite file: SQLite has no SKIP LOCKED, so a second scheduler on the same file
waits on a file lock instead of racing the first for the same rows."""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@contextmanager
def sqlite_single_process(database_url: str, stop: threading.Event) -> Iterator[bool]:
    """Holds the lock next to the database file while the scheduler runs (PostgreSQL needs none).

    Yields False when a stop was requested while waiting.
    """
    if not database_url.startswith("sqlite"):
        yield True
        return
    path = Path(database_url.split("///", 1)[-1] + ".scheduler.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another scheduler uses this SQLite database; waiting for it to stop "
                        "(use PostgreSQL to run several schedulers)", extra={"lock": str(path)})
            while not stop.wait(0.5):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    continue
        yield not stop.is_set()
    finally:
        handle.close()
