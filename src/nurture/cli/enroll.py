"""`nurture enroll`: an operator's way in, for one person or many from a CSV file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, CommandError, Commands, instant_argument, now_of, say
from nurture.cli.progress import progress
from nurture.config import Settings

if TYPE_CHECKING:
    from nurture.domain.people import Person


def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.engine.enrollment import enroll, read_people_csv
    from nurture.engine.ports import ConsentRecord
    from nurture.services.runtime import runtime_from

    runtime = runtime_from(settings)
    content = runtime.content.current
    content.sequence(args.sequence)  # fail early on an unknown key
    now = now_of(args)
    path = Path(args.from_csv) if args.from_csv else None
    if path is not None and not path.is_file():
        raise CommandError(f"{path}: no such file")
    # One person needs no bar; a file of them may take a while.
    with progress(enabled=path is not None) as bars:
        if path is not None:
            people, row_errors = read_people_csv(path, bars.phase("reading rows"))
            consent = ConsentRecord(kind="import", source=f"csv:{path.name}")
        else:
            people, row_errors = [_one_person(args)], []
            consent = ConsentRecord(kind="operator", source="cli")
        started = time.perf_counter()
        results = enroll(runtime.store, content, people, args.sequence, consent, now,
                         bars.phase("enrolling", total=len(people)))
        elapsed = time.perf_counter() - started
    for row_error in row_errors:
        say(f"{path}:{row_error.line}: rejected: {row_error.message}")
    created = sum(1 for r in results if r.created)
    for result in results:
        if not result.created:
            say(f"not enrolled: {result.email}: {result.reason}")
    say(f"enrolled {created}, not enrolled {len(results) - created}, rejected rows "
           f"{len(row_errors)} ({elapsed:.2f} s)")
    return EXIT_FAILED if row_errors or (results and created == 0) else EXIT_OK


def _one_person(args: argparse.Namespace) -> Person:
    from nurture.domain.people import PersonInvalid, make_person

    if not args.email:
        raise CommandError("give an EMAIL or --from-csv FILE")
    try:
        return make_person(args.email, args.first_name, args.time_zone,
                           (args.hesitations or "").split(","), args.discreet, args.locale)
    except PersonInvalid as error:
        raise CommandError(str(error)) from None


def register(commands: Commands) -> None:
    enroll = commands.add_parser("enroll", help="enroll one person, or many from a CSV file")
    enroll.add_argument("email", nargs="?", help="the person's address")
    enroll.add_argument("--sequence", required=True, help="sequence key, e.g. sample")
    enroll.add_argument("--first-name")
    enroll.add_argument("--time-zone", default="UTC", help="IANA zone, e.g. Asia/Kolkata")
    enroll.add_argument("--hesitations", help="comma-separated reason keys, e.g. stigma,"
                        "fear_of_blame")
    enroll.add_argument("--discreet", action="store_true", help="neutral subjects and sender")
    enroll.add_argument("--locale", default="en")
    enroll.add_argument("--from-csv", metavar="FILE", help="columns: email, first_name, "
                        "time_zone, hesitations (separated by ;)")
    enroll.add_argument("--now", type=instant_argument, help="enroll as of this instant (ISO 8601)")
    enroll.set_defaults(handler=cmd_enroll)
