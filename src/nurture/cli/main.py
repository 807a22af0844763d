"""The `nurture` command line: database, content checks, enrolling, dispatching and the services."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from nurture.cli.arguments import instant_argument
from nurture.cli.marketing import MarketingError
from nurture.cli.ops import OperatorError
from nurture.clock import utcnow
from nurture.config import Settings, SettingsError, environment_for_children, load_settings
from nurture.domain.problems import ContentInvalid, Severity

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A problem the operator can fix; printed as one line, exit code 1."""


def _now(args: argparse.Namespace) -> datetime:
    value: datetime | None = getattr(args, "now", None)
    return value if value is not None else utcnow()


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# --- db -----------------------------------------------------------------------------------------

def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.database import upgrade

    upgrade(settings.database_url)
    _print("database is at the latest revision")
    return EXIT_OK


# --- content ------------------------------------------------------------------------------------

def cmd_db_rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.database import ensure_migrated, make_engine
    from nurture.store.rotation import rotate_data_keys

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    count = rotate_data_keys(engine)
    _print(f"re-encrypted the names and answers of {count} subscriber(s) with the first key; "
           "older keys can now be removed from NURTURE_DATA_KEYS")
    return EXIT_OK


def cmd_db_new_data_key(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.crypto import new_key

    _print(new_key())
    return EXIT_OK


def cmd_sequences_validate(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.content.library import check_content

    sequences, library, problems = check_content(settings.sequences_dir, settings.templates_dir)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    warnings = [p for p in problems if p.severity is Severity.WARNING]
    for problem in problems:
        _print(str(problem))
    if library is not None and not errors:
        from nurture.content.readability import readability_report

        _print("readability (Flesch reading ease of each step's text, higher is easier):")
        for item in readability_report(sequences, library):
            _print(f"  {item.sequence}/{item.step}: {item.score:.0f}")
    steps = sum(len(s.steps) for s in sequences.values())
    _print(f"{len(sequences)} sequence(s), {steps} step(s): {len(errors)} error(s), "
           f"{len(warnings)} warning(s)")
    return EXIT_FAILED if errors else EXIT_OK


# --- enroll -------------------------------------------------------------------------------------

def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.domain.people import PersonInvalid, make_person
    from nurture.engine.enrollment import enroll, read_people_csv
    from nurture.engine.ports import ConsentRecord
    from nurture.services.runtime import runtime_from

    runtime = runtime_from(settings)
    content = runtime.content.current
    content.sequence(args.sequence)  # fail early on an unknown key
    now = _now(args)
    if args.from_csv:
        path = Path(args.from_csv)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        people, row_errors = read_people_csv(path)
        for row_error in row_errors:
            _print(f"{path}:{row_error.line}: rejected: {row_error.message}")
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
            _print(f"not enrolled: {result.email}: {result.reason}")
    _print(f"enrolled {created}, not enrolled {len(results) - created}, rejected rows "
           f"{len(row_errors)} ({elapsed:.2f} s)")
    return EXIT_FAILED if row_errors or (results and created == 0) else EXIT_OK


# --- dispatch -----------------------------------------------------------------------------------

def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.services.runtime import runtime_from
    from nurture.smtp.factory import transport_from_settings

    runtime = runtime_from(settings)
    dispatcher = runtime.dispatcher(transport_from_settings(settings, separate_process=True))
    try:
        report = dispatcher.run(_now(args))
    finally:
        dispatcher.transport.close()
    if args.json:
        _print(json.dumps(report.as_dict()))
    else:
        _print(" ".join(f"{name}={value}" for name, value in report.as_dict().items()))
    return EXIT_OK


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.scheduler.service import run_scheduler

    return run_scheduler(settings)


def cmd_mailcatcher(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.smtp.mailcatcher import run_mailcatcher

    run_mailcatcher(settings.outbox_dir, settings.mailcatcher_smtp_port,
                    settings.mailcatcher_http_port)
    return EXIT_OK


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.web_host
    port = args.port or settings.web_port
    # proxy_headers=False: the app alone decides which X-Forwarded-For to believe
    # (NURTURE_TRUSTED_PROXIES). No access log: token links would be written to it.
    options = {"host": host, "port": port, "proxy_headers": False, "server_header": False,
               "access_log": False, "log_config": None}
    if args.workers > 1:
        # Worker processes import the app themselves, so they get it from a factory.
        uvicorn.run("nurture.web.factory:app_from_environment", factory=True,
                    workers=args.workers, **options)  # type: ignore[arg-type]
        return EXIT_OK
    from nurture.web.app import create_app

    uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
    return EXIT_OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The embedded product on one machine: migrate, then mail catcher, scheduler and web app."""
    from nurture.store.database import upgrade

    upgrade(settings.database_url)
    env = environment_for_children(
        NURTURE_SMTP_URL=f"smtp://127.0.0.1:{settings.mailcatcher_smtp_port}")
    exe = [sys.executable, "-m", "nurture"]
    services = [["mailcatcher"], ["scheduler"]]
    if _web_available():
        services.append(["web"])
    children = [subprocess.Popen([*exe, *service], env=env) for service in services]
    _print(f"inbox:    http://127.0.0.1:{settings.mailcatcher_http_port}/  (emails are also "
           f"saved as .eml files in {settings.outbox_dir}/)")
    if _web_available():
        _print(f"web form: http://{settings.web_host}:{settings.web_port}/")
    _print("scheduler: ticking every "
           f"{settings.tick_seconds:g} s; stop everything with Ctrl-C")

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = EXIT_OK
    while children:
        for child in list(children):
            code = child.poll()
            if code is not None:
                children.remove(child)
                if code != 0:
                    status = EXIT_FAILED
                    stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return status


def _web_available() -> bool:
    from importlib.util import find_spec

    return find_spec("nurture.web.app") is not None


# --- parser -------------------------------------------------------------------------------------

Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nurture", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply Alembic migrations up to the latest") \
        .set_defaults(handler=cmd_db_upgrade)
    db_commands.add_parser("rotate-keys", help="re-encrypt names and answers with the first key "
                           "of NURTURE_DATA_KEYS").set_defaults(handler=cmd_db_rotate_keys)
    db_commands.add_parser("new-data-key", help="print a new key for NURTURE_DATA_KEYS") \
        .set_defaults(handler=cmd_db_new_data_key)

    sequences = commands.add_parser("sequences", help="check the content in sequences/ and "
                                    "templates/")
    seq_commands = sequences.add_subparsers(dest="sequences_command", required=True,
                                            metavar="ACTION")
    seq_commands.add_parser("validate", help="report every problem with file:line and a fix; "
                            "exit 1 on an error").set_defaults(handler=cmd_sequences_validate)

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

    dispatch = commands.add_parser("dispatch", help="send everything due, print counts, exit")
    dispatch.add_argument("--now", type=instant_argument, help="dispatch as of this instant (ISO 8601)")
    dispatch.add_argument("--json", action="store_true", help="print the counts as JSON")
    dispatch.set_defaults(handler=cmd_dispatch)

    commands.add_parser("scheduler", help="the long-lived sending service") \
        .set_defaults(handler=cmd_scheduler)
    commands.add_parser("mailcatcher", help="catch all mail locally: SMTP server plus an inbox "
                        "page").set_defaults(handler=cmd_mailcatcher)
    web = commands.add_parser("web", help="the signup, confirmation and preferences web app")
    web.add_argument("--host", help="address to listen on (default NURTURE_WEB_HOST)")
    web.add_argument("--port", type=int, help="port to listen on (default NURTURE_WEB_PORT)")
    web.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    web.set_defaults(handler=cmd_web)
    commands.add_parser("run", help="the whole product on this machine (development)") \
        .set_defaults(handler=cmd_run)
    from nurture.cli import bounces as cli_bounces
    from nurture.cli import marketing as cli_marketing
    from nurture.cli import ops as cli_ops

    cli_marketing.register(commands)
    cli_ops.register(commands)
    cli_bounces.register(commands)
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
    quiet = args.command in ("enroll", "dispatch", "sequences", "db", "bounces")
    configure_logging(settings.log_level or ("WARNING" if quiet else "INFO"))
    handler: Handler = args.handler
    try:
        from nurture.services.runtime import configure_data_keys

        configure_data_keys(settings)
        return handler(settings, args)
    except ContentInvalid as error:
        sys.stderr.write("nurture: the content has errors; run `nurture sequences validate`:\n"
                         f"{error}\n")
        return EXIT_FAILED
    except (CommandError, MarketingError, OperatorError) as error:
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
