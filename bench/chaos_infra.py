"""The chaos soak's own world: a throw-away PostgreSQL cluster, a fault-injecting relay that keeps
what it received, the content copy, and the real `nurture` processes (dispatch passes, schedulers,
the web app)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session

from bench.common import ROOT, BenchContent

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL --------------------------------------------------------------------------------

class Cluster:
    """initdb into a temp dir owned by `postgres`, trust auth, its own port and socket dir."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.dir = Path(f"/tmp/nurture-chaos-pg-{uuid.uuid4().hex[:8]}")
        self.port = free_port()
        self.running = False

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr[-800:]} {done.stdout[-400:]}")

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c max_connections=300 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")

    def start(self) -> Cluster:
        self.dir.mkdir(mode=0o700)
        shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._as_postgres(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                          "-E", "UTF8", "--no-sync")
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", data, "-o", self._options(),
                          "-l", str(self.dir / "server.log"), "-w", "start")
        self.running = True
        return self

    def restart(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o",
                          self._options(), "-l", str(self.dir / "server.log"), "-m", "fast", "-w",
                          "restart")

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                                  "immediate", "-w", "stop", timeout=60)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def admin_conninfo(self) -> str:
        return f"host={HOST} port={self.port} user=postgres dbname=postgres"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{name}"

    def terminate_backends(self, database: str) -> int:
        import psycopg

        with psycopg.connect(self.admin_conninfo, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "datname = %s AND pid <> pg_backend_pid()", (database,)).fetchall()
        return len(rows)


# -- the relay ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    message_id: str
    recipient: str
    subject: str
    at: float
    """time.time() when the relay accepted it."""
    list_unsubscribe: bool
    unsubscribe_in_body: bool
    crisis_heading: str | None
    """The first crisis heading (of any locale) found in the body, or None."""
    body_sha: str
    date_ahead: float = 0.0
    """Seconds the message's Date (its sender's clock) is ahead of its arrival: hours for a pass
    on the virtual clock, about 0 for a scheduler on the real one."""


class RelayState:
    """What the relay does wrong now, and what it received: each accepted message is appended raw
    to a dump file (cheap, so the event loop answers in time) and parsed at the end."""

    def __init__(self, headings: dict[str, str], dump: Path) -> None:
        self.headings = headings
        self.drop = 0
        self.refuse_until = 0.0
        self.silent_until = 0.0
        self.count = 0
        self.bodies_kept: dict[str, str] = {}
        self.parse_errors: list[str] = []
        self.dropped = 0
        self.refused = 0
        self.stalled = 0
        self.dump = dump
        self._file = dump.open("ab")
        self._parsed: list[Received] | None = None

    def record(self, data: bytes, recipients: list[str]) -> None:
        rcpt = recipients[0].lower() if recipients else "-"
        self._file.write(f"{time.time():.6f} {rcpt} {len(data)}\n".encode() + data + b"\n")
        self._file.flush()
        self.count += 1

    @property
    def messages(self) -> list[Received]:
        """Every accepted message, parsed (once, after the run: the dump is read whole)."""
        if self._parsed is None:
            self._file.flush()
            self._parsed = list(self._parse())
        return self._parsed

    def _parse(self) -> Any:
        import hashlib

        with self.dump.open("rb") as dump:
            while header := dump.readline():
                at, rcpt, size = header.decode().split()
                data = dump.read(int(size))
                dump.readline()
                try:
                    message = message_from_bytes(data, policy=policy.default)
                    plain = message.get_body(("plain",))
                    text = plain.get_content() if plain is not None else ""
                    html = message.get_body(("html",))
                    whole = text + (html.get_content() if html is not None else "")
                    mid = str(message.get("Message-ID", "")).strip()
                    subject = str(message.get("Subject", ""))
                    unsubscribe = bool(message.get("List-Unsubscribe"))
                    dated = message.get("Date")
                    ahead = dated.datetime.timestamp() - float(at) if dated is not None else 0.0
                except Exception as error:  # counted as a footer problem below, with the reason
                    self.parse_errors.append(f"{type(error).__name__}: {error}")
                    text, whole, subject, unsubscribe, ahead = "", "", "", False, 0.0
                    mid = f"<unparsed-{len(self.parse_errors)}>"
                heading = next((h for h in self.headings.values() if h in whole), None)
                item = Received(message_id=mid, recipient=rcpt, subject=subject, at=float(at),
                                list_unsubscribe=unsubscribe, unsubscribe_in_body="/u/" in whole,
                                crisis_heading=heading,
                                body_sha=hashlib.sha256(text.encode()).hexdigest()[:16],
                                date_ahead=ahead)
                if heading is None or not item.unsubscribe_in_body:
                    self.bodies_kept[mid] = text[-2000:]
                yield item

    def close(self) -> None:
        self._file.close()


class _Handler:
    def __init__(self, state: RelayState) -> None:
        self.state = state

    async def _stall(self) -> bool:
        """While the relay is silent, answer nothing; True when it was."""
        if time.time() >= self.state.silent_until:
            return False
        self.state.stalled += 1
        while time.time() < self.state.silent_until:
            await asyncio.sleep(0.2)
        return True

    async def handle_EHLO(self, smtp: SmtpProtocol, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        await self._stall()
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, smtp: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        state = self.state
        if await self._stall():
            # The client has long given up: the message was never accepted.
            cast(asyncio.Transport, smtp.transport).abort()
            return "421 gone"
        if time.time() < state.refuse_until:
            state.refused += 1
            return "421 4.3.2 Service not available, closing transmission channel"
        if state.drop > 0:
            state.drop -= 1
            state.dropped += 1
            cast(asyncio.Transport, smtp.transport).abort()
            return "421 never sent: the connection is gone"
        state.record(cast(bytes, envelope.original_content), list(envelope.rcpt_tos))
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    def _trigger_server(self) -> None:
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class Relay:
    def __init__(self, headings: dict[str, str], dump: Path) -> None:
        self.state = RelayState(headings, dump)
        self.controller = _Controller(_Handler(self.state), hostname=HOST, port=0,
                                      enable_SMTPUTF8=True, data_size_limit=0)
        self.port = 0

    def start(self) -> Relay:
        self.controller.start()
        self.port = int(self.controller.port)
        return self

    def stop(self) -> None:
        self.state.silent_until = 0.0
        self.controller.stop()


def crisis_headings() -> dict[str, str]:
    import yaml

    out: dict[str, str] = {}
    for path in sorted((ROOT / "templates" / "locales").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[path.stem] = str(data["crisis"]["heading"])
    return out


# -- content -----------------------------------------------------------------------------------

def make_content(directory: Path) -> BenchContent:
    """The shipped sequences and templates as they are, send windows included (09:00-20:00 in each
    person's own time zone), in a folder the content faults may edit."""
    sequences, templates = directory / "sequences", directory / "templates"
    shutil.copytree(ROOT / "templates", templates)
    shutil.copytree(ROOT / "sequences", sequences)
    return BenchContent(directory, sequences, templates)


# -- processes ---------------------------------------------------------------------------------

class Child:
    """A `python -m nurture ...` child in its own process group, output in files."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str, *args: str) -> None:
        self.name = name
        self.args = args
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.started = time.time()
        with open(self.stderr_path, "ab") as stderr, open(self.stdout_path, "wb") as stdout:
            self.process = subprocess.Popen([sys.executable, "-m", "nurture", *args], env=env,
                                            cwd=workdir, stdout=stdout, stderr=stderr,
                                            stdin=subprocess.DEVNULL, process_group=0)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, number: int) -> bool:
        if not self.alive:
            return False
        try:
            self.process.send_signal(number)
        except ProcessLookupError:
            return False
        return True

    def output(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 4) -> str:
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:])

    def end(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL to the whole group."""
        if self.alive:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def wait_http(url: str, timeout: float = 60, child: Child | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive:
            raise RuntimeError(f"{child.name} exited: {child.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def child_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    return env
