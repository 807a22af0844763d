"""Enrolling a subscriber when they confirm: the sequence the selection rules choose, from the current
content, with edits to sequences/ picked up while the app runs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Final

from nurture.content.library import ContentHolder
from nurture.content.selection import SELECTION_FILE, Selection, load_selection, load_selection_file
from nurture.domain.people import Person
from nurture.domain.problems import ContentInvalid
from nurture.engine.enrollment import new_enrollment
from nurture.engine.ports import ConsentRecord, NewEnrollment
from nurture.store.accounts.types import Account

log = logging.getLogger(__name__)

CONTENT_REFRESH_SECONDS: Final = 30.0


class Enroller:
    """Builds a confirmed subscriber's enrollment from the current content and selection rules,
    picking up edits to sequences/ at most every CONTENT_REFRESH_SECONDS."""

    def __init__(self, content: ContentHolder) -> None:
        self._content = content
        self._selection = load_selection(content.sequences_dir)
        problems = self._selection.check_sequences(content.current.sequences)
        if problems:
            raise ContentInvalid(problems)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    @property
    def selection(self) -> Selection:
        return self._selection

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked_at < CONTENT_REFRESH_SECONDS:
                return
            self._checked_at = time.monotonic()
            self._content.refresh()
            # The holder's folder: with content in the database, each version has its own.
            selection, problems = load_selection_file(self._content.sequences_dir / SELECTION_FILE)
            if selection is None:
                # The last good rules keep working, as with sequence files.
                for problem in problems:
                    log.error("selection rules refused", extra={"problem": str(problem)})
            elif selection != self._selection:
                self._selection = selection

    def plan(self, account: Account, consent: ConsentRecord, now: datetime) -> NewEnrollment:
        """The enrollment of someone who confirms their address at `now`: they are there now, so
        an `immediate` first step is due at once."""
        self._refresh()
        content = self._content.current
        key = self._selection.choose(account.profile)
        if key not in content.sequences:
            log.error("selected sequence does not exist; using the default",
                      extra={"sequence": key})
            key = self._selection.default
        person = Person(email=account.email, first_name=account.first_name,
                        time_zone=account.time_zone, hesitations=account.hesitations,
                        discreet=account.discreet, locale=account.locale)
        return new_enrollment(person, content, key, consent, now, at_confirmation=True)
