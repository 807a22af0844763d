"""The content reload job: look at the sequence and template files, and when a new version takes
over, record it for operators. It runs on an interval and on SIGHUP."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nurture.content.library import Content

log = logging.getLogger(__name__)


class Reloads(Protocol):
    @property
    def current(self) -> Content: ...

    def refresh(self) -> bool: ...


class RecordVersion(Protocol):
    def __call__(self, version: str, files: tuple[str, ...], now: datetime) -> object: ...


class ReloadContent:
    """A refused edit keeps the last good version (the holder logs why); only a version that took
    over is recorded."""

    def __init__(self, content: Reloads, *, record: RecordVersion,
                 clock: Callable[[], datetime]) -> None:
        self.content = content
        self.record = record
        self.clock = clock

    def run(self) -> bool:
        """True when a new version took over."""
        if not self.content.refresh():
            return False
        self.record_version()
        return True

    def record_version(self) -> None:
        content = self.content.current
        try:
            self.record(content.version, content.files, self.clock())
        except Exception:
            # A record for operators: never a reason to stop sending.
            log.exception("could not record the content version")
