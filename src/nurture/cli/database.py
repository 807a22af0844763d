"""`nurture db`: migrations, the keys that encrypt names and answers at rest, and the retention
purge run by hand."""

from __future__ import annotations

import argparse
import json

from nurture.cli.arguments import EXIT_OK, Commands, instant_argument, now_of, say
from nurture.cli.progress import progress
from nurture.config import Settings


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.database import upgrade

    upgrade(settings.database_url)
    say("database is at the latest revision")
    return EXIT_OK


def cmd_db_rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.database import ensure_migrated, make_engine
    from nurture.store.rotation import rotate_data_keys

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    with progress() as bars:
        count = rotate_data_keys(engine, progress=bars.phase("re-encrypting"))
    say(f"re-encrypted the names and answers of {count} subscriber(s) with the first key; "
           "older keys can now be removed from NURTURE_DATA_KEYS")
    return EXIT_OK


def cmd_db_purge(settings: Settings, args: argparse.Namespace) -> int:
    """What the scheduler's housekeeping does every hour, run now by hand."""
    from datetime import timedelta

    from nurture.services.retention import purge_expired
    from nurture.store.database import ensure_migrated, make_engine

    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
        with progress() as bars:
            purged = purge_expired(
                engine, now=now_of(args), retention=timedelta(days=settings.retention_days),
                departed_progress=bars.phase("people who left"),
                unconfirmed_progress=bars.phase("unconfirmed signups"))
    finally:
        engine.dispose()
    if args.json:
        say(json.dumps(purged.as_dict()))
        return EXIT_OK
    say(f"purged {purged.departed} who left (only a hash of each address kept) and deleted "
        f"{purged.unconfirmed} unconfirmed signup(s), all untouched since "
        f"{purged.cutoff.isoformat()} (NURTURE_RETENTION_DAYS={settings.retention_days})")
    return EXIT_OK


def cmd_db_new_data_key(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.crypto import new_key

    say(new_key())
    return EXIT_OK


def register(commands: Commands) -> None:
    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply Alembic migrations up to the latest") \
        .set_defaults(handler=cmd_db_upgrade)
    db_commands.add_parser("rotate-keys", help="re-encrypt names and answers with the first key "
                           "of NURTURE_DATA_KEYS").set_defaults(handler=cmd_db_rotate_keys)
    purge = db_commands.add_parser(
        "purge", help="run the retention purge now, as the scheduler does every hour",
        description="People who left (unsubscribed, bounced, complained) keep only a hash of "
        "their address; signups never confirmed are deleted; both once untouched for "
        "NURTURE_RETENTION_DAYS. Running it twice purges nothing more.")
    purge.add_argument("--now", type=instant_argument, help="purge as of this instant (ISO 8601)")
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")
    purge.set_defaults(handler=cmd_db_purge)
    db_commands.add_parser("new-data-key", help="print a new key for NURTURE_DATA_KEYS") \
        .set_defaults(handler=cmd_db_new_data_key)
