"""The `nurture` command line: database, content checks, enrolling, dispatching and the services.

Each command group lives in its own module with a `register` function; this one builds the parser
and turns the errors a person can act on into one line and an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nurture.cli import (
    bounces,
    content,
    database,
    enroll,
    experiments,
    marketing,
    ops,
    sequences,
    services,
)
from nurture.cli.arguments import EXIT_FAILED, EXIT_USAGE, CommandError, Handler
from nurture.config import SettingsError, load_settings, terminal_allows_colour
from nurture.domain.problems import ContentInvalid

# Commands that print their own results: their logs stay at WARNING unless NURTURE_LOG_LEVEL says.
QUIET_COMMANDS = frozenset({"enroll", "dispatch", "sequences", "db", "bounces", "run",
                            "subscribers", "experiments", "content"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nurture", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (database, sequences, content, enroll, services, marketing, experiments, ops,
                  bounces):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nurture.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.stderr.write(f"nurture: {error}\n")
        return EXIT_USAGE
    quiet = args.command in QUIET_COMMANDS
    configure_logging(settings.log_level or ("WARNING" if quiet else "INFO"), settings.log_format,
                      colour=terminal_allows_colour())
    handler: Handler = args.handler
    try:
        from nurture.services.runtime import configure_data_keys

        configure_data_keys(settings)
        return handler(settings, args)
    except ContentInvalid as error:
        sys.stderr.write("nurture: the content has errors; run `nurture sequences validate`:\n"
                         f"{error}\n")
        return EXIT_FAILED
    except CommandError as error:
        sys.stderr.write(f"nurture: {error}\n")
        return EXIT_FAILED
    except Exception as error:
        from nurture.content.library import UnknownSequence
        from nurture.store.crypto import DataKeyError
        from nurture.store.database import DatabaseNotMigrated

        if isinstance(error, DatabaseNotMigrated | UnknownSequence | DataKeyError):
            sys.stderr.write(f"nurture: {error}\n")
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
