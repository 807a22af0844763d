"""Judges the running experiments once a day: winners the figures declare, pins in the
files and variants an edit removed go into the history (one entry each, however many schedulers
judge), and a promoted winner reaches the next claims through it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nurture.content.library import Content
from nurture.store.experiments import HistoryEntry

log = logging.getLogger(__name__)


class Judge(Protocol):
    def __call__(self, content: Content, now: datetime) -> list[HistoryEntry]: ...


class JudgeExperiments:
    """Runs the judge on the current content at the clock's `now`; a failure is logged and the
    job runs again later (sending never waits for it)."""

    def __init__(self, *, judge: Judge, content: Callable[[], Content],
                 clock: Callable[[], datetime]) -> None:
        self.judge = judge
        self.content = content
        self.clock = clock

    def run(self) -> None:
        content = self.content()
        if not content.experiments:
            return
        try:
            self.judge(content, self.clock())
        except Exception:
            log.exception("judging experiments failed; it runs again later")
