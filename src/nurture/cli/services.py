"""The services: `nurture dispatch` (one pass), `scheduler`, `mailcatcher`, `web`, and `run` (all of them)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, Commands, instant_argument, now_of, say
from nurture.config import Settings, environment_for_children


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.services.runtime import runtime_from
    from nurture.smtp.factory import transport_from_settings

    runtime = runtime_from(settings)
    dispatcher = runtime.dispatcher(transport_from_settings(settings, separate_process=True))
    try:
        report = dispatcher.run(now_of(args))
    finally:
        dispatcher.transport.close()
    if args.json:
        say(json.dumps(report.as_dict()))
    else:
        say(" ".join(f"{name}={value}" for name, value in report.as_dict().items()))
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
    say(f"inbox:    http://127.0.0.1:{settings.mailcatcher_http_port}/  (emails are also "
           f"saved as .eml files in {settings.outbox_dir}/)")
    if _web_available():
        say(f"web form: http://{settings.web_host}:{settings.web_port}/")
    say("scheduler: ticking every "
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


def register(commands: Commands) -> None:
    dispatch = commands.add_parser("dispatch", help="send everything due, print counts, exit")
    dispatch.add_argument("--now", type=instant_argument,
                          help="dispatch as of this instant (ISO 8601)")
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
