"""`nurture enroll`: an operator's way in, for one person or many from a CSV file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, CommandError, Commands, instant_argument, now_of, say
from nurture.config import Settings


def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.domain.people import PersonInvalid, make_person
    from nurture.engine.enrollment import enroll, read_people_csv
    from nurture.engine.ports import ConsentRecord
    from nurture.services.runtime import runtime_from

    runtime = runtime_from(settings)
    content = runtime.content.current
    content.sequence(args.sequence)  # fail early on an unknown key
    now = now_of(args)
    if args.from_csv:
        path = Path(args.from_csv)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        people, row_errors = read_people_csv(path)
        for row_error in row_errors:
            say(f"{path}:{row_error.line}: rejected: {row_error.message}")
        consent = ConsentRecord(kind="import", source=f"csv:{path.name}")
    else:
        if not args.email:
            raise CommandError("give an EMAIL or --from-csv FILE")
        try:
            people = [make_person(args.email, args.first_name, args.time_zone,
                                  (args.hesitations or "").split(","), args.discreet, args.locale)]
        except PersonInvalid as error:
            raise CommandError(str(error)) from None
        row_errors = []
        consent = ConsentRecord(kind="operator", source="cli")
    started = time.perf_counter()
    results = enroll(runtime.store, content, people, args.sequence, consent, now)
    elapsed = time.perf_counter() - started
    created = sum(1 for r in results if r.created)
    for result in results:
        if not result.created:
            say(f"not enrolled: {result.email}: {result.reason}")
    say(f"enrolled {created}, not enrolled {len(results) - created}, rejected rows "
           f"{len(row_errors)} ({elapsed:.2f} s)")
    return EXIT_FAILED if row_errors or (results and created == 0) else EXIT_OK


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
