"""`nurture bounces ingest`: read DSN bounces and ARF complaints from a maildir or stdin and suppress
the addresses they name; prints counts."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Commands, instant_argument
from nurture.cli.progress import counted, progress
from nurture.clock import utcnow
from nurture.config import Settings


def register(subparsers: Commands) -> None:
    """Add `bounces ingest` to the `nurture` command's subcommands."""
    bounces = subparsers.add_parser("bounces", help="bounce and complaint reports")
    actions = bounces.add_subparsers(dest="bounces_command", required=True, metavar="ACTION")
    ingest = actions.add_parser(
        "ingest",
        help="read DSN (bounce) and ARF (complaint) messages, suppress the addresses, print counts",
        description="Hard bounces (Action: failed, Status 5.x.x) suppress the address and end its "
        "enrollments; complaints (Feedback-Type: abuse) suppress it everywhere; 4.x.x reports are "
        "ignored. Reading the same message again changes nothing.",
    )
    ingest.add_argument("source", nargs="?", metavar="-",
                        help="read one message from standard input")
    ingest.add_argument("--maildir", metavar="DIR", help="read every message in DIR/new and DIR/cur")
    ingest.add_argument("--now", type=instant_argument, help="apply as of this instant (ISO 8601)")
    ingest.add_argument("--json", action="store_true", help="print the counts as JSON")
    ingest.set_defaults(handler=cmd_bounces_ingest)


def _maildir(args: argparse.Namespace) -> tuple[Path, int] | None:
    """The --maildir and how many messages it holds; None (said on stderr) if it is none."""
    from nurture.engine.feedback import count_maildir

    maildir = Path(args.maildir)
    try:
        return maildir, count_maildir(maildir)
    except NotADirectoryError as error:
        sys.stderr.write(f"nurture: {error}\n")
        return None


def cmd_bounces_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.engine.feedback import ingest_messages, read_maildir
    from nurture.store.database import ensure_migrated, make_engine
    from nurture.store.sql.store import SqlStore

    if (args.maildir is None) == (args.source is None) or args.source not in (None, "-"):
        sys.stderr.write("nurture: give either --maildir DIR or - (one message on stdin)\n")
        return EXIT_USAGE
    maildir = _maildir(args) if args.maildir is not None else None
    if args.maildir is not None and maildir is None:
        return EXIT_FAILED
    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
        now: datetime = args.now if args.now is not None else utcnow()
        with progress(enabled=maildir is not None) as bars:
            messages: Iterable[bytes]
            if maildir is None:
                messages = [sys.stdin.buffer.read()]
            else:
                path, total = maildir
                messages = counted((raw for _, raw in read_maildir(path)),
                                   bars.phase("reading reports", total=total), total)
            counts = ingest_messages(SqlStore(engine), messages, now=now,
                                     message_id_domain=settings.sender_domain)
    finally:
        engine.dispose()
    values = counts.as_dict()
    if args.json:
        sys.stdout.write(json.dumps(values) + "\n")
    else:
        sys.stdout.write(" ".join(f"{name}={value}" for name, value in values.items()) + "\n")
    return EXIT_OK
