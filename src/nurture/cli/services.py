"""The services: `nurture dispatch` (one pass), `scheduler`, `mailcatcher`, `web`, and `run` (all of them)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from datetime import UTC
from typing import TYPE_CHECKING

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, Commands, instant_argument, now_of, say
from nurture.config import Settings, environment_for_children

if TYPE_CHECKING:
    from nurture.engine.dispatcher import Dispatcher
    from nurture.services.runtime import Runtime

# What `nurture run` starts, in order; each is `nurture <service>` in a process of its own.
SERVICES = ("mailcatcher", "scheduler", "web")


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.services.runtime import runtime_from

    runtime = runtime_from(settings)
    dispatcher = runtime.dispatcher(runtime.transport(separate_process=True))
    # SIGTERM (a cron timeout, systemd, a deploy) stops a pass as it stops the scheduler: the
    # messages with the relay are heard out and recorded, the rest released, the counts printed.
    # Without this it would kill the pass outright, and what went out since the last record
    # would go out again once the lease ran out.
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: dispatcher.request_stop())
    try:
        if args.next:
            return _dispatch_next(runtime, dispatcher, args)
        report = dispatcher.run(now_of(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
        dispatcher.transport.close()
    if args.json:
        say(json.dumps(report.as_dict()))
    else:
        say(" ".join(f"{name}={value}" for name, value in report.as_dict().items()))
    return EXIT_OK


def _dispatch_next(runtime: Runtime, dispatcher: Dispatcher, args: argparse.Namespace) -> int:
    """Time travel: `--next N` runs N passes, each as of the moment the next waiting delivery falls
    due (or now, if one is already due), so that the emails of the coming days arrive at once."""
    from nurture.store.operations import next_due_at

    floor = now_of(args)
    for _ in range(args.next):
        due = next_due_at(runtime.engine)
        if due is None:
            say("nothing is waiting to be sent")
            break
        at = max(due if due.tzinfo else due.replace(tzinfo=UTC), floor)
        report = dispatcher.run(at)
        counts = report.as_dict()
        if args.json:
            say(json.dumps({"at": at.isoformat(), **counts}))
        else:
            say(f"as of {at:%Y-%m-%d %H:%M} UTC: "
                + " ".join(f"{name}={value}" for name, value in counts.items() if value))
        floor = at
        if dispatcher.stopping:
            break
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
    # The services speak up for warnings only: a person reads the three addresses below, not
    # their start-up lines. NURTURE_LOG_LEVEL=INFO shows every tick that sent something.
    env = environment_for_children(
        NURTURE_SMTP_URL=f"smtp://127.0.0.1:{settings.mailcatcher_smtp_port}",
        NURTURE_LOG_LEVEL="WARNING")
    services = [name for name in SERVICES if name != "web" or _web_available()]
    # A process group of their own: Ctrl-C reaches this process alone, which stops each service
    # once, with SIGTERM, instead of each getting SIGINT and then SIGTERM halfway through.
    children = {name: subprocess.Popen([sys.executable, "-m", "nurture", name], env=env,
                                       process_group=0) for name in services}
    say(f"inbox:     http://127.0.0.1:{settings.mailcatcher_http_port}/  (also .eml files in "
        f"{settings.outbox_dir}/)")
    if "web" in children:
        say(f"web form:  http://{settings.web_host}:{settings.web_port}/")
    say(f"scheduler: sends what is due every {settings.tick_seconds:g} s. Ctrl-C stops all three.")
    if args.demo:
        _demo(settings)
    return _supervise(children)


def _demo(settings: Settings) -> None:
    from nurture.cli.demo import DemoFailed, run_demo

    try:
        person = run_demo(settings)
    except DemoFailed as error:
        say(f"demo: {error}")
        return
    smtp = f"smtp://127.0.0.1:{settings.mailcatcher_smtp_port}"
    prefix = "" if settings.smtp_url == smtp else f"NURTURE_SMTP_URL={smtp} "
    say(f"demo:      {person.address} signed up and confirmed; the welcome email "
        f"\"{person.welcome_subject}\" is in the inbox.")
    say("           See the next three emails arrive (time travel, in another terminal):")
    say(f"           {prefix}.venv/bin/nurture dispatch --next 3")


def _supervise(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait for the services; when one fails, stop the others. Exit 0 after Ctrl-C or SIGTERM."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = EXIT_OK
    while children:
        for name, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[name]
            if code != 0 and not (stopping and code == -signal.SIGTERM):
                say(f"run: {name} stopped with exit code {code}; stopping the others")
                status = EXIT_FAILED
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return status


def _web_available() -> bool:
    from importlib.util import find_spec

    return find_spec("nurture.web.app") is not None


def _count(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of 1 or more")
    return value


def register(commands: Commands) -> None:
    dispatch = commands.add_parser("dispatch", help="send everything due, print counts, exit")
    dispatch.add_argument("--now", type=instant_argument,
                          help="dispatch as of this instant (ISO 8601)")
    dispatch.add_argument("--json", action="store_true", help="print the counts as JSON")
    dispatch.add_argument("--next", type=_count, metavar="N", default=0,
                          help="time travel: N passes, each as of when the next waiting "
                          "delivery falls due")
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
    run = commands.add_parser("run", help="the whole product on this machine (development)")
    run.add_argument("--demo", action="store_true",
                     help="also sign up and confirm a sample person, then print a command that "
                     "shows their next three emails")
    run.set_defaults(handler=cmd_run)
