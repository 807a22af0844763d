"""Operators' commands: `nurture config check` (the effective settings, secrets masked), `status`,
`admin hash-password`; `subscribers` lives in `cli.people` and is registered from here."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nurture.cli import people
from nurture.cli.arguments import CommandError, Commands
from nurture.cli.tables import age, for_a_person, print_status
from nurture.config import Environment, Settings, unknown_variables, variable_name
from nurture.example_links import placeholder_links, placeholder_problems

# Shown as *** by `config check`.
SECRET_FIELDS = frozenset({"secret_key", "api_key", "feedback_webhook_secret", "data_keys", "admin_users"})


def _mask_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def _shown(value: Any) -> str:
    if isinstance(value, frozenset | tuple):
        return ",".join(sorted(str(item) for item in value))
    if value is None:
        return ""
    return str(value.value if hasattr(value, "value") else value)


RELAY_PERIOD = timedelta(hours=24)


def masked_settings(settings: Settings) -> dict[str, str]:
    shown: dict[str, str] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        text = _shown(value)
        if name in SECRET_FIELDS:
            text = "***" if text else "(empty)"
        elif name.endswith("_url") or name == "database_url":
            text = _mask_url(text)
        shown[variable_name(name)] = text
    return shown


def cmd_config_check(settings: Settings, args: Any) -> int:
    for name, value in sorted(masked_settings(settings).items()):
        sys.stdout.write(f"{name}={value}\n")
    if settings.relays_file is not None:
        # The relays' URLs as describe() gives them: user, host and port, never a password.
        sys.stdout.write(f"relays ({settings.relays_file}) {settings.relays.describe()}\n")
    if settings.content_source == "database":
        sys.stdout.write(f"content: the database's newest version, edited at /admin/content or "
                         f"with `nurture content import`; each process writes it under "
                         f"{settings.content_cache_dir} (a database with none yet takes "
                         f"{settings.sequences_dir} and {settings.templates_dir} at first start)\n")
    else:
        sys.stdout.write(f"content: the files in {settings.sequences_dir} and "
                         f"{settings.templates_dir} on each host (the admin pages preview them; "
                         "NURTURE_CONTENT_SOURCE=database lets them edit)\n")
    for name in unknown_variables():
        sys.stdout.write(f"warning: {name} is not a setting nurture knows; check its spelling\n")
    if settings.environment is not Environment.PRODUCTION:
        # Production refuses these (the settings check does it); say so before going live.
        links = placeholder_links(settings.templates_dir)
        for problem in placeholder_problems(links, booking_url_set=settings.booking_url is not None):
            field, _, why = problem.partition(": ")
            sys.stdout.write(f"warning: {variable_name(field)}: production mode will refuse "
                             f"this: {why}\n")
    sys.stdout.write(f"settings are valid ({settings.environment.value} mode)\n")
    return 0


def cmd_status(settings: Settings, args: Any) -> int:
    from nurture.cli.sending_status import write_sending
    from nurture.clock import utcnow
    from nurture.store.database import ensure_migrated, make_engine
    from nurture.store.operations import heartbeats, queue_health, relay_activity
    from nurture.store.sending import sending_report

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    now = utcnow()
    health = queue_health(engine, now)
    processes = heartbeats(engine)
    relays = relay_activity(engine, now - RELAY_PERIOD)
    sending = sending_report(settings.relays, engine, now)
    if args.json:
        sys.stdout.write(json.dumps({
            "processes": [{"owner": p.owner, "last_tick_at": p.last_tick_at.isoformat(),
                           "ticks": p.ticks, "sent": p.sent, "content_version": p.content_version,
                           "stopped_at": p.stopped_at.isoformat() if p.stopped_at else None}
                          for p in processes],
            "due": health.due, "waiting": health.waiting,
            "oldest_due_at": health.oldest_due_at.isoformat() if health.oldest_due_at else None,
            "deliveries": health.by_status, "relays_last_24h": relays, "sending": sending},
            indent=2) + "\n")
        return 0
    if for_a_person():
        print_status(now, processes, health)
        _write_relays(relays)
        write_sending(sending)
        return 0
    sys.stdout.write("scheduler processes:\n")
    for p in processes:
        state = f"stopped {age(now, p.stopped_at)}" if p.stopped_at else "running"
        sys.stdout.write(f"  {p.owner}: {state}, last tick {age(now, p.last_tick_at)}, "
                         f"{p.ticks} ticks, {p.sent} sent, content {p.content_version}\n")
    if not processes:
        sys.stdout.write("  none has run yet\n")
    sys.stdout.write(f"queue: {health.due} due now, {health.waiting} waiting in all; oldest due "
                     f"{age(now, health.oldest_due_at)}\n")
    sys.stdout.write("deliveries: " + ", ".join(f"{k}={v}" for k, v in sorted(
        health.by_status.items())) + "\n")
    _write_relays(relays)
    write_sending(sending)
    return 0


def _write_relays(relays: dict[str, dict[str, int]]) -> None:
    """Per relay (where several are configured), what it answered in the last day."""
    for name, counts in sorted(relays.items()):
        sys.stdout.write(f"relay {name} (last 24 h): " + ", ".join(
            f"{status}={count}" for status, count in sorted(counts.items())) + "\n")


def cmd_admin_hash_password(settings: Settings, args: Any) -> int:
    import getpass

    from nurture.web.admin.auth import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("password for the new admin: ")
        if getpass.getpass("again: ") != first:
            raise CommandError("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\n")
    try:
        hashed = hash_password(first)
    except ValueError as error:
        raise CommandError(str(error)) from None
    sys.stdout.write(f"{args.name}:{hashed}\n")
    sys.stderr.write("add this to NURTURE_ADMIN_USERS (comma-separated with any others)\n")
    return 0



def register(commands: Commands) -> None:
    status = commands.add_parser("status", help="scheduler processes, queue depth, oldest due")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    admin = commands.add_parser("admin", help="admin users of the web app")
    admin_actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    hashing = admin_actions.add_parser("hash-password", help="make a NURTURE_ADMIN_USERS entry "
                                       "(reads the password from the terminal or stdin)")
    hashing.add_argument("name")
    hashing.set_defaults(handler=cmd_admin_hash_password)

    people.register(commands)

    config = commands.add_parser("config", help="settings")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    actions.add_parser("check", help="print the effective settings (secrets masked); exit 2 on a "
                       "bad one").set_defaults(handler=cmd_config_check)
