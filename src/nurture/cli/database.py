"""`nurture db`: migrations and the keys that encrypt names and answers at rest."""

from __future__ import annotations

import argparse

from nurture.cli.arguments import EXIT_OK, Commands, say
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
    count = rotate_data_keys(engine)
    say(f"re-encrypted the names and answers of {count} subscriber(s) with the first key; "
           "older keys can now be removed from NURTURE_DATA_KEYS")
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
    db_commands.add_parser("new-data-key", help="print a new key for NURTURE_DATA_KEYS") \
        .set_defaults(handler=cmd_db_new_data_key)
