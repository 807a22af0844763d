"""Postfix's `smtp-sink` as the benchmarks' relay: a server written in C that accepts every
message and throws it away, so that it, unlike a Python server, is never what limits a sender.
It counts messages (its `-c` counters) and, when asked, appends every message to one dump file
for the Message-IDs (duplicates). Debian ships it in the `postfix` package; `bench/run` installs
it when it can."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

from bench.smtp_server import end_child

HOST = "127.0.0.1"
INSTALL_HINT = ("smtp-sink is not installed: `apt-get install postfix` (Debian's package holds "
                "it; choose 'No configuration'), or run bench/run as root to have it installed")
_COUNTERS = re.compile(rb"mesg=(\d+)")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def sink_binary() -> str | None:
    """The path of smtp-sink, or None when it is not installed."""
    return shutil.which("smtp-sink") or next(
        (path for path in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink")
         if os.access(path, os.X_OK)), None)


def _read_or_end(descriptor: int) -> bytes:
    try:
        return os.read(descriptor, 4096)
    except OSError:
        return b""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class SinkProcess:
    """smtp-sink on a free loopback port. `dump_dir` keeps every message (for Message-IDs), which
    costs the sink a file write per message: leave it out where only speed is measured."""

    label = "smtp-sink (Postfix, C)"

    def __init__(self, *, dump_dir: Path | None = None, backlog: int = 1024,
                 options: tuple[str, ...] = ()) -> None:
        self.port = 0
        self._options = options
        """More of smtp-sink's options, e.g. ("-p",) not to offer PIPELINING."""
        self._dump_dir = dump_dir
        self._backlog = backlog
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._count = 0
        self._changed = threading.Condition()

    def start(self) -> SinkProcess:
        binary = sink_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.port = _free_port()
        command = [binary, "-c", "-m", "512", *self._options]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root otherwise
        if self._dump_dir is not None:
            self._dump_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self._dump_dir, 0o777)  # written after it drops to nobody
            command += ["-D", str(self._dump_dir / "messages")]
        command += [f"{HOST}:{self.port}", str(self._backlog)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read_counters, daemon=True,
                                        name="smtp-sink counters")
        self._reader.start()
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as connection:
                    connection.recv(512)  # the greeting: it is serving
                    connection.sendall(b"QUIT\r\n")
                    return
            except OSError:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"smtp-sink exited with {self._process.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _read_counters(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        # Each update ends with a carriage return, not a newline: read what arrives, until the
        # sink ends (or its pipe is closed under this thread by stop()).
        while chunk := _read_or_end(descriptor):
            found = _COUNTERS.findall(chunk)
            if found:
                with self._changed:
                    self._count = int(found[-1])
                    self._changed.notify_all()

    @property
    def pid(self) -> int | None:
        """The sink's process id while it runs (for its CPU time)."""
        return self._process.pid if self._process is not None else None

    @property
    def messages(self) -> int:
        """Messages accepted so far."""
        with self._changed:
            return self._count

    def wait_for(self, count: int, timeout: float) -> int:
        """Wait until `count` messages were accepted (or `timeout` seconds); the count then."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._count

    def message_ids(self) -> Counter[str]:
        """Each Message-ID the dump holds and how often (needs `dump_dir`)."""
        if self._dump_dir is None:
            raise RuntimeError("message_ids() needs a SinkProcess made with dump_dir")
        ids: Counter[str] = Counter()
        for path in self._dump_dir.glob("messages*"):
            ids.update(found.decode("ascii", "replace")
                       for found in _MESSAGE_ID.findall(path.read_bytes()))
        return ids

    def stop(self) -> None:
        process, self._process = self._process, None
        end_child(process)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
