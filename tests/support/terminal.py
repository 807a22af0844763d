"""Running the `nurture` command on a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.support.paths import ROOT

COLUMNS, ROWS = 120, 40


class Terminal:
    """`nurture ARGS` with stdin, stdout and stderr on a pty of COLUMNS x ROWS; `expect` reads what
    it wrote until a pattern shows up (waiting on the output, never on the clock)."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path | None = None) -> None:
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {"TERM": "xterm-256color", **env}
        self.process = subprocess.Popen([sys.executable, "-m", "nurture", *args], stdin=slave,
                                        stdout=slave, stderr=slave, env=env, cwd=cwd or ROOT,
                                        start_new_session=True)
        os.close(slave)
        self.output = ""

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self._master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # the other side closed: the process has exited
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", errors="replace")
        return True

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if not self._read(0.1):
                break
        found = re.search(pattern, self.output)
        if found:
            return found
        raise AssertionError(f"{pattern!r} never appeared; the terminal showed:\n{self.output}")

    def wait(self, timeout: float = 120) -> int:
        """Read everything until the process exits; its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            if self.process.poll() is not None and not self._read(0):
                break
        return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def interrupt(self) -> int:
        """Ctrl-C, as the terminal sends it: SIGINT to the foreground process; then wait."""
        self.process.send_signal(signal.SIGINT)
        return self.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._master)


def on_terminal(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run a command to its end on a pty; its exit code and everything it wrote there."""
    terminal = Terminal(*args, env=env)
    try:
        return terminal.wait(timeout), terminal.output
    finally:
        terminal.close()


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """The text without colour and cursor codes, and with the pty's CRLF as LF."""
    return ANSI.sub("", text).replace("\r\n", "\n")
