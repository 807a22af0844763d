"""The bench SMTP server: aiosmtpd in its own process, counting messages and discarding them.

Run as `python -m bench.smtp_server [--delay-ms 20]`. It prints one JSON line with its ports once
it listens, then serves until stdin closes or it receives SIGTERM. Besides SMTP it listens on a
control port that answers one-line commands with one JSON line:

    stats   counts, first/last arrival (epoch seconds), duplicate Message-IDs, connections
    ids     {message_id: first arrival} for every message since the last reset
    reset   forget everything counted so far

`ServerProcess` below starts it from a benchmark and speaks the control protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Counter:
    """The aiosmtpd handler: counts, remembers Message-IDs and their first arrival, keeps nothing else."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.reset()

    def reset(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.ids: dict[str, float] = {}
        self.duplicates = 0
        self.without_id = 0
        self.connections = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.connections += 1
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            # A remote relay's latency: the client waits for the reply, other connections go on.
            await asyncio.sleep(self.delay)
        now = time.time()
        data: bytes = envelope.original_content or envelope.content or b""
        self.messages += 1
        self.bytes += len(data)
        if self.first is None:
            self.first = now
        self.last = now
        end = data.find(b"\r\n\r\n")
        match = _MESSAGE_ID.search(data, 0, end if end >= 0 else len(data))
        if match is None:
            self.without_id += 1
        else:
            message_id = match.group(1).decode("ascii", "replace")
            if message_id in self.ids:
                self.duplicates += 1
            else:
                self.ids[message_id] = now
        return "250 2.0.0 Ok: discarded"

    def stats(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "first": self.first,
            "last": self.last,
            "unique_ids": len(self.ids),
            "duplicates": self.duplicates,
            "without_id": self.without_id,
            "connections": self.connections,
        }


async def _serve(delay: float, port: int) -> None:
    from aiosmtpd.smtp import SMTP

    counter = Counter(delay)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(counter, hostname="bench.test", enable_SMTPUTF8=True),
        HOST, port,
    )

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := (await reader.readline()).strip():
                command = line.decode("ascii", "replace")
                if command == "stats":
                    reply: Any = counter.stats()
                elif command == "ids":
                    reply = counter.ids
                elif command == "reset":
                    counter.reset()
                    reply = {"ok": True}
                else:
                    reply = {"error": f"unknown command {command!r}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    control_server = await asyncio.start_server(control, HOST, 0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # The parent going away (its end of our stdin closes) stops us too: no orphan servers.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: stop.set() if not os.read(stdin, 1) else None)
    ports = {
        "smtp_port": smtp.sockets[0].getsockname()[1],
        "control_port": control_server.sockets[0].getsockname()[1],
    }
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    await stop.wait()
    smtp.close()
    control_server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_server", description=__doc__)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added before each 250 reply")
    parser.add_argument("--port", type=int, default=0, help="SMTP port (default: any free one)")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    asyncio.run(_serve(args.delay_ms / 1000, args.port))
    return 0


class ServerProcess:
    """Starts `python -m bench.smtp_server` and talks to its control port."""

    def __init__(self, *, delay_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        self._process: subprocess.Popen[bytes] | None = None
        self.smtp_port = 0
        self.control_port = 0
        self._control: socket.socket | None = None
        self._reader: Any = None

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.smtp_port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> ServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_server", "--delay-ms", str(self.delay_ms)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=10)
            raise RuntimeError(f"bench SMTP server exited with {self._process.returncode}")
        ports = json.loads(line)
        self.smtp_port, self.control_port = ports["smtp_port"], ports["control_port"]
        self._control = socket.create_connection((HOST, self.control_port), timeout=30)
        self._reader = self._control.makefile("rb")
        return self

    def _ask(self, command: str) -> Any:
        assert self._control is not None
        self._control.sendall(command.encode() + b"\n")
        return json.loads(self._reader.readline())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._ask("stats")
        return result

    def ids(self) -> dict[str, float]:
        result: dict[str, float] = self._ask("ids")
        return result

    def reset(self) -> None:
        self._ask("reset")

    def wait_for(self, count: int, timeout: float, *, poll: float = 0.05,
                 stall: float | None = None) -> dict[str, Any]:
        """Stats once `count` messages arrived, or when `timeout` passes, or (with `stall`) when
        no message arrived for that many seconds; check `messages`."""
        now = time.monotonic()
        deadline, progress_at, seen = now + timeout, now, -1
        while True:
            stats = self.stats()
            now = time.monotonic()
            if stats["messages"] != seen:
                seen, progress_at = stats["messages"], now
            if stats["messages"] >= count or now >= deadline:
                return stats
            if stall is not None and now - progress_at >= stall:
                return stats
            time.sleep(poll)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._control is not None:
            self._control.close()
            self._control = None
        process, self._process = self._process, None
        end_child(process)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def end_child(process: subprocess.Popen[bytes] | None) -> None:
    """Ask a helper process to end (kill it after 10 s) and close its pipes."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


if __name__ == "__main__":
    sys.exit(main())
