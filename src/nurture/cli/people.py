"""`nurture subscribers export|erase`: what is stored about people, or its erasure, for one address
or many (arguments and/or a file with one address a line), with progress on a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nurture.cli.arguments import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    Commands,
    instant_argument,
    now_of,
)
from nurture.cli.progress import progress
from nurture.config import Settings
from nurture.store.accounts.store import AccountStore


@dataclass
class Addresses:
    """The addresses asked for, normalized and without repeats, and those that are not addresses."""

    valid: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


@dataclass
class Tally:
    done: int = 0
    unknown: list[str] = field(default_factory=list)


def _asked(args: argparse.Namespace) -> list[str]:
    asked = list(args.emails)
    if args.from_file:
        path = Path(args.from_file)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        asked += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not asked:
        raise CommandError("give one or more EMAIL arguments or --from-file FILE")
    return asked


def _addresses(asked: list[str]) -> Addresses:
    from nurture.domain.people import PersonInvalid, normalize_email

    found, seen = Addresses(), set()
    for text in asked:
        try:
            address = normalize_email(text)
        except PersonInvalid:
            found.invalid.append(text)
            continue
        if address not in seen:
            seen.add(address)
            found.valid.append(address)
    return found


def _one(args: argparse.Namespace) -> bool:
    """One address given as an argument: the command answers as it always has, for one person."""
    return len(args.emails) == 1 and not args.from_file


def _the_subscriber(accounts: AccountStore, text: str) -> uuid.UUID:
    """The subscriber of the one address asked for, or the reason there is none."""
    from nurture.domain.people import PersonInvalid, normalize_email

    try:
        address = normalize_email(text)
    except PersonInvalid as error:
        raise CommandError(str(error)) from None
    subscriber_id = accounts.subscriber_id(address)
    if subscriber_id is None:
        raise CommandError("no subscriber has this address")
    return subscriber_id


def _accounts(settings: Settings) -> AccountStore:
    from nurture.store.database import ensure_migrated, make_engine

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    return AccountStore(engine)


def _each(accounts: AccountStore, addresses: list[str], description: str, enabled: bool,
          act: Callable[[uuid.UUID], bool]) -> Tally:
    """`act` on the subscriber of each address held; the others (and any that `act` finds gone
    meanwhile, saying False) are counted as unknown."""
    tally = Tally()
    with progress(enabled=enabled) as bars:
        report = bars.phase(description, total=len(addresses))
        for done, address in enumerate(addresses, start=1):
            subscriber_id = accounts.subscriber_id(address)
            if subscriber_id is not None and act(subscriber_id):
                tally.done += 1
            else:
                tally.unknown.append(address)
            report(done, len(addresses))
    return tally


def _finish(args: argparse.Namespace, addresses: Addresses, tally: Tally) -> int:
    """Say on stderr how many addresses were not found or not addresses (which ones only with
    --list-unknown: they are personal data); exit 1 when there were any."""
    missing = len(tally.unknown) + len(addresses.invalid)
    if not missing:
        return EXIT_OK
    sys.stderr.write(f"{len(tally.unknown)} address(es) not found, {len(addresses.invalid)} "
                     "not an address" + ("" if args.list_unknown else
                                         " (add --list-unknown to see them)") + "\n")
    if args.list_unknown:
        for text in [*tally.unknown, *addresses.invalid]:
            sys.stderr.write(f"  {text}\n")
    return EXIT_FAILED


@contextmanager
def _output(out: str | None) -> Iterator[IO[str]]:
    if out is None:
        yield sys.stdout
        return
    with Path(out).open("w", encoding="utf-8") as file:
        yield file


def cmd_subscribers_export(settings: Settings, args: argparse.Namespace) -> int:
    addresses = _addresses(_asked(args))
    accounts = _accounts(settings)
    if _one(args):
        subscriber_id = _the_subscriber(accounts, args.emails[0])
        with _output(args.out) as out:
            out.write(json.dumps(accounts.export(subscriber_id), indent=2, default=str) + "\n")
        return EXIT_OK
    # Exports written to a terminal are their own progress; a bar would tear through them.
    watched = args.out is not None or not sys.stdout.isatty()
    with _output(args.out) as out:
        writer = _ArrayWriter(out) if args.array else _LinesWriter(out)
        tally = _each(accounts, addresses.valid, "exporting", watched,
                      lambda subscriber_id: writer.write(accounts.export(subscriber_id)))
        writer.close()
    sys.stderr.write(f"exported {tally.done} subscriber(s)"
                     + (f" to {args.out}" if args.out else "") + "\n")
    return _finish(args, addresses, tally)


class _LinesWriter:
    """JSON lines: one subscriber's export per line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, data: dict[str, Any] | None) -> bool:
        """Write one export; False for none (the subscriber was erased meanwhile)."""
        if data is None:
            return False
        self.out.write(json.dumps(data, default=str) + "\n")
        return True

    def close(self) -> None:
        self.out.flush()


class _ArrayWriter(_LinesWriter):
    """One JSON array, written as it goes rather than held in memory."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self.first = True

    def write(self, data: dict[str, Any] | None) -> bool:
        if data is None:
            return False
        self.out.write(("[\n" if self.first else ",\n") + json.dumps(data, default=str))
        self.first = False
        return True

    def close(self) -> None:
        self.out.write("[]\n" if self.first else "\n]\n")
        self.out.flush()


def cmd_subscribers_erase(settings: Settings, args: argparse.Namespace) -> int:
    addresses = _addresses(_asked(args))
    if not args.yes:
        raise CommandError("erasing cannot be undone; add --yes to confirm")
    accounts = _accounts(settings)
    now = now_of(args)
    if _one(args):
        subscriber_id = _the_subscriber(accounts, args.emails[0])
        accounts.erase(subscriber_id, now=now)
        sys.stdout.write("erased: only a hash of the address remains, so nothing is sent to it "
                         "again\n")
        return EXIT_OK
    tally = _each(accounts, addresses.valid, "erasing", True,
                  lambda subscriber_id: accounts.erase(subscriber_id, now=now))
    sys.stdout.write(f"erased {tally.done} subscriber(s): only a hash of each address remains, "
                     "so nothing is sent to them again\n")
    return _finish(args, addresses, tally)


def _many_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("emails", nargs="*", metavar="EMAIL")
    parser.add_argument("--from-file", metavar="FILE",
                        help="also every address in FILE, one a line (# starts a comment line)")
    parser.add_argument("--list-unknown", action="store_true",
                        help="print on stderr the addresses not found (by default only counted)")


def register(commands: Commands) -> None:
    subscribers = commands.add_parser("subscribers", help="people's data: export or erase")
    people = subscribers.add_subparsers(dest="subscribers_command", required=True, metavar="ACTION")
    export = people.add_parser(
        "export", help="print everything stored about addresses (JSON)",
        description="One EMAIL: one JSON object. Several, or --from-file: one JSON object a "
        "line (or one array with --array). Exit 1 when an address is not found.")
    _many_options(export)
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    export.add_argument("--array", action="store_true",
                        help="for many addresses, one JSON array instead of JSON lines")
    export.set_defaults(handler=cmd_subscribers_export)
    erase = people.add_parser(
        "erase", help="delete people's data; keep only a hashed suppression",
        description="Each address given is erased: its subscriber and every row about them are "
        "deleted and only a hash of the address stays suppressed. Exit 1 when an address is not "
        "found (the others are still erased).")
    _many_options(erase)
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    erase.add_argument("--now", type=instant_argument, help="erase as of this instant (ISO 8601)")
    erase.set_defaults(handler=cmd_subscribers_erase)


