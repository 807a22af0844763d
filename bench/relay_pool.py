"""Benchmark 8, relay pool: a relay 20 ms away (a proxy on loopback that holds every chunk 10 ms
each way in front of the fast bench SMTP server), fed through `ConnectionPool` of 1, 2, 4 and 8
relay processes, each holding one SMTP connection.

Each message costs a connection four round trips (MAIL, RCPT, DATA, the body), so one connection
is capped by latency, not by the relay's work; N connections overlap them. The same pre-built
~19 KB messages go through every pool, with the same number begun ahead of the oldest answer (the
dispatcher's limit); every connection sends one message first, so starting the processes and
the SMTP sessions is not in the time. Throughput is begun-first to answered-last, in this process.

`python -m bench.relay_pool proxy --to PORT [--delay-ms 10]` runs the proxy alone: it prints one
JSON line with its port, then serves until stdin closes or it receives SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bench.common import ROOT, Options, fmt_rate, quiet_logging, result, row
from bench.smtp_server import HOST, ServerProcess, end_child

if TYPE_CHECKING:
    from nurture.engine.ports import OutgoingMessage
    from nurture.smtp.pool import ConnectionPool

NAME = "relay_pool"
HOP_MS = 10.0
"""Added to every chunk in each direction: an SMTP round trip costs twice this."""
CONNECTIONS = (1, 2, 4, 8)
COMPARED = 4
"""The pool size the target is about; the others are extra rows."""
TARGET = 3.0
MESSAGE_BYTES = 19_000
CHUNK = 65_536


# -- the proxy: latency without a bandwidth limit -------------------------------------------------

async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward what `reader` gives, each chunk `delay` seconds after it arrived: chunks overlap
    in the pipe (latency), rather than each waiting for the one before (a slow link)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            arrived, chunk = await queue.get()
            wait = arrived + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()  # the other direction may still carry a reply (221)
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(CHUNK):
            queue.put_nowait((loop.time(), chunk))
    except OSError:
        pass
    queue.put_nowait((loop.time(), b""))
    with contextlib.suppress(OSError):
        await delivering


async def _proxy(target_port: int, delay: float) -> None:
    async def connect(client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, target_port)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(_carry(client_reader, server_writer, delay),
                                 _carry(server_reader, client_writer, delay))
        finally:
            for writer in (server_writer, client_writer):
                writer.close()

    loop = asyncio.get_running_loop()
    listener = await asyncio.start_server(connect, HOST, 0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # The parent going away (its end of our stdin closes) stops us too: no orphan proxies.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: stop.set() if not os.read(stdin, 1) else None)
    sys.stdout.write(json.dumps({"port": listener.sockets[0].getsockname()[1]}) + "\n")
    sys.stdout.flush()
    await stop.wait()
    listener.close()


class ProxyProcess:
    """`python -m bench.relay_pool proxy` in front of `target_port`, in a process of its own so
    that its event loop never waits for this one's interpreter lock."""

    def __init__(self, target_port: int, *, delay_ms: float = HOP_MS) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def start(self) -> ProxyProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.relay_pool", "proxy", "--to", str(self.target_port),
             "--delay-ms", str(self.delay_ms)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=10)
            raise RuntimeError(f"the latency proxy exited with {self._process.returncode}")
        self.port = int(json.loads(line)["port"])
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        end_child(process)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# -- the measurement -----------------------------------------------------------------------------

_PARAGRAPH = ("It is common for one partner to feel ready for couples therapy before the other "
              "does. Hesitation is not a verdict on the relationship: it often comes from worry "
              "about being blamed, about cost, or about what a stranger will think. ")


def messages(count: int, tag: str) -> list[OutgoingMessage]:
    """`count` ready messages of about MESSAGE_BYTES each (a text and an HTML part), each with a
    Message-ID of its own so the server can count duplicates."""
    from nurture.engine.ports import OutgoingMessage

    text = "\n\n".join([_PARAGRAPH] * (MESSAGE_BYTES // 3 // len(_PARAGRAPH)))
    html = "".join(f"<p style=\"margin:0 0 16px\">{_PARAGRAPH}</p>\n"
                   for _ in range(MESSAGE_BYTES // 2 // len(_PARAGRAPH) + 2))
    out = []
    for number in range(count):
        recipient = f"{tag}-{number}@example.org"
        message_id = f"<{tag}-{number}@bench.test>"
        email = EmailMessage()
        email["From"] = "Bench <bench@bench.test>"
        email["To"] = recipient
        email["Subject"] = f"A note for this week ({number})"
        email["Message-ID"] = message_id
        email.set_content(text)
        email.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
        out.append(OutgoingMessage(envelope_from="bench@bench.test", recipients=(recipient,),
                                   data=email.as_bytes(policy=policy.SMTP), message_id=message_id))
    return out


def pipelined(pool: ConnectionPool, batch: list[OutgoingMessage], window: int) -> list[bool]:
    """Begin every message keeping at most `window` unanswered, as the dispatcher does; whether
    each was accepted, in order."""
    accepted: list[bool] = []

    def collect() -> None:
        answer = pool.finish()
        accepted.append(answer is not None and answer.result.ok)

    for number, message in enumerate(batch):
        pool.begin(message)
        if number + 1 > window:
            collect()
    while len(accepted) < len(batch):
        collect()
    return accepted


def measure(options: Options, server: ServerProcess, proxy: ProxyProcess, connections: int,
            count: int) -> dict[str, Any]:
    from nurture.engine.pacing import SEND_AHEAD_LIMIT
    from nurture.setting_values import parse_smtp_url
    from nurture.smtp.pool import ConnectionPool
    from nurture.smtp.relay_process import ProcessTransport

    batch = messages(count, f"pool{connections}")
    warm = messages(connections, f"warm{connections}")
    endpoint = parse_smtp_url(proxy.url)
    pool = ConnectionPool([ProcessTransport(endpoint, timeout=30) for _ in range(connections)])
    try:
        pool.reset()
        # Nothing pending: round robin gives each connection one, starting its process and session.
        warmed = [pool.send(message).ok for message in warm]
        server.reset()
        started = time.perf_counter()
        accepted = pipelined(pool, batch, SEND_AHEAD_LIMIT)
        elapsed = time.perf_counter() - started
        carried = [total - 1 for total in pool.carried]
    finally:
        pool.close()
    stats = server.stats()
    rate = count / elapsed
    options.say(f"relay_pool: {connections} connection(s): {rate:,.1f} emails/s "
                f"({elapsed:.2f} s for {count}), per connection {carried}")
    return {"connections": connections, "emails": count, "seconds": elapsed, "rate": rate,
            "accepted": sum(accepted), "warmed": sum(warmed), "per_connection": carried,
            "window": SEND_AHEAD_LIMIT, "message_bytes": len(batch[0].data), "server": stats,
            "complete": all(accepted) and all(warmed) and stats["unique_ids"] == count
            and stats["duplicates"] == 0}


def run(options: Options) -> dict[str, Any]:
    quiet_logging()
    count = options.pick(400, 120)
    with ServerProcess() as server, ProxyProcess(server.smtp_port) as proxy:
        runs = {n: measure(options, server, proxy, n, count) for n in CONNECTIONS}
    one = runs[1]
    size = f"relay {2 * HOP_MS:g} ms away, {count:,} × {one['message_bytes'] / 1000:.0f} KB"
    rows = []
    for n in (COMPARED, *[n for n in CONNECTIONS if n not in (1, COMPARED)]):
        pooled = runs[n]
        ratio = pooled["rate"] / one["rate"]
        complete = pooled["complete"] and one["complete"]
        target = f"≥ {TARGET:g}×" if n == COMPARED else "(extra row)"
        met = (ratio >= TARGET and complete) if n == COMPARED else None
        rows.append(row(f"relay pool: {n} vs 1 connection(s), {size}",
                        measured=fmt_rate(pooled["rate"]), baseline=fmt_rate(one["rate"]),
                        ratio=ratio, target=target, met=met, measured_value=pooled["rate"],
                        baseline_value=one["rate"], unit="emails/s",
                        note="" if complete else "not every message was accepted exactly once"))
    per_message = 1 / one["rate"]
    notes = [f"one connection: {per_message * 1000:.0f} ms a message, about "
             f"{per_message / (2 * HOP_MS / 1000):.1f} round trips of {2 * HOP_MS:g} ms; "
             f"messages per connection: " + "; ".join(
                 f"{n}: {runs[n]['per_connection']}" for n in CONNECTIONS)]
    if not all(r["complete"] for r in runs.values()):
        notes.append("some message was refused, lost or duplicated: see details")
    return result(NAME, rows, {"runs": runs, "hop_ms": HOP_MS, "message_bytes": MESSAGE_BYTES},
                  notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_pool", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser("proxy", help="run the latency proxy alone")
    proxy.add_argument("--to", type=int, required=True, help="the SMTP server's port")
    proxy.add_argument("--delay-ms", type=float, default=HOP_MS, help="added each way per chunk")
    args = parser.parse_args(argv)
    asyncio.run(_proxy(args.to, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
