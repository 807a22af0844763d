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
from nurture.engine.ports import ConsentRecord, EnrollmentStore, EnrollResult, NewEnrollment

CSV_COLUMNS = ("email", "first_name", "time_zone", "hesitations")


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
           consent: ConsentRecord, now: datetime) -> list[EnrollResult]:
    items = [new_enrollment(p, content, sequence_key, consent, now) for p in people]
    return store.enroll(items, now=now)


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


def read_people_csv(path: Path) -> tuple[list[Person], list[RowError]]:
    """Valid people and one error per rejected row; line numbers count the header as line 1."""
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("email",) if c not in (reader.fieldnames or [])]
    if missing:
        return [], [RowError(1, f"the header has no '{missing[0]}' column; expected columns: "
                                f"{', '.join(CSV_COLUMNS)}")]
    people: list[Person] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for row in reader:
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
    return people, errors
