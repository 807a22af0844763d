"""Enrolling people by hand or from a CSV file: each person checked, then one bulk write."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nurture.content.library import Content, UnknownSequence
from nurture.domain.model import Profile
from nurture.domain.people import Person, PersonInvalid, make_person
from nurture.engine.planner import plan_next
from nurture.engine.ports import (
    ConsentRecord,
    EnrollmentStore,
    EnrollResult,
    NewEnrollment,
    Progress,
)

CSV_COLUMNS = ("email", "first_name", "time_zone", "hesitations")
# Rows read between two reports of progress: rare enough to cost nothing next to the checks.
REPORT_EVERY = 1000


def new_enrollment(person: Person, content: Content, sequence_key: str, consent: ConsentRecord,
                   now: datetime, *, at_confirmation: bool = False) -> NewEnrollment:
    """`at_confirmation`: the person confirmed their address just now, so an `immediate` first
    step goes at once; an operator's enroll or a CSV import is not them being there, and waits."""
    if sequence_key == "system":
        raise UnknownSequence("the 'system' sequence holds system emails; nobody can be enrolled in it")
    sequence = content.sequence(sequence_key)
    profile = Profile(time_zone=person.time_zone, hesitations=person.hesitations,
                      discreet=person.discreet, locale=person.locale)
    plan = plan_next(sequence, profile, done_step_keys=frozenset(), anchor=now,
                     at_confirmation=at_confirmation)
    return NewEnrollment(email=person.email, first_name=person.first_name,
                         time_zone=person.time_zone, hesitations=person.hesitations,
                         discreet=person.discreet, locale=person.locale,
                         sequence_key=sequence.key, content_version=content.version,
                         first_delivery=plan.as_next_delivery(), consent=consent)


def enroll(store: EnrollmentStore, content: Content, people: list[Person], sequence_key: str,
           consent: ConsentRecord, now: datetime,
           progress: Progress | None = None) -> list[EnrollResult]:
    """Plan each person's first step, then write them all in one go; `progress` hears the write."""
    items = [new_enrollment(p, content, sequence_key, consent, now) for p in people]
    return store.enroll(items, now=now, progress=progress)


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


def read_people_csv(path: Path,
                    progress: Progress | None = None) -> tuple[list[Person], list[RowError]]:
    """Valid people and one error per rejected row; line numbers count the header as line 1.
    `progress` counts rows against the lines of the file (a quoted line break makes that total
    a little high until the last report, which gives the true count)."""
    text = path.read_text(encoding="utf-8-sig")
    lines = max(text.count("\n") + (0 if text.endswith("\n") else 1) - 1, 0)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("email",) if c not in (reader.fieldnames or [])]
    if missing:
        return [], [RowError(1, f"the header has no '{missing[0]}' column; expected columns: "
                                f"{', '.join(CSV_COLUMNS)}")]
    people: list[Person] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for rows, row in enumerate(reader, start=1):
        if progress is not None and rows % REPORT_EVERY == 0:
            progress(rows, max(lines, rows))
        line = reader.line_num
        try:
            person = make_person(
                email=row.get("email") or "",
                first_name=row.get("first_name"),
                time_zone=row.get("time_zone") or "UTC",
                hesitations=(row.get("hesitations") or "").split(";"),
            )
        except PersonInvalid as error:
            errors.append(RowError(line, str(error)))
            continue
        if person.email in seen:
            errors.append(RowError(line, "email: appears earlier in the file"))
            continue
        seen.add(person.email)
        people.append(person)
    if progress is not None:
        done = len(people) + len(errors)
        progress(done, done)
    return people, errors
