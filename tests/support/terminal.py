"""Running the `nurture` command on a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

ROWS, COLUMNS = 40, 160


@dataclass(frozen=True)
class Run:
    returncode: int
    terminal: str
    """Everything written to the terminal, escape sequences and all."""
    stdout: str
    """What went to stdout when it was a pipe (empty when stdout was the terminal)."""


def terminal_env(env: dict[str, str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """A colour terminal of ROWS x COLUMNS, whatever the test runner's own; then `overrides`."""
    shown = {k: v for k, v in env.items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "CI")}
    shown["TERM"] = "xterm-256color"
    return {**shown, **(overrides or {})}


def on_terminal(*args: str, env: dict[str, str], stdout_too: bool = True,
                stdin: bytes | None = None, timeout: float = 120,
                overrides: dict[str, str] | None = None) -> Run:
    """Run `nurture *args` with stderr (and stdout unless `stdout_too` is False) on a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture", *args], env=terminal_env(env, overrides), cwd=ROOT,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE, stderr=slave)
    os.close(slave)
    if stdin is not None and process.stdin is not None:
        process.stdin.write(stdin)
        process.stdin.close()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the last writer closed the pty (Linux says EIO)
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None and not select.select([master], [], [], 0)[0]:
            break
    else:
        process.kill()
    out = process.stdout.read().decode() if process.stdout is not None else ""
    returncode = process.wait(timeout=10)
    os.close(master)
    return Run(returncode, b"".join(chunks).decode(errors="replace"), out)


class Terminal:
    """`nurture ARGS` with stdin, stdout and stderr on a pty of COLUMNS x ROWS; `expect` reads what
    it wrote until a pattern shows up (waiting on the output, never on the clock)."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path | None = None) -> None:
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.process = subprocess.Popen([sys.executable, "-m", "nurture", *args], stdin=slave,
                                        stdout=slave, stderr=slave, env=terminal_env(env),
                                        cwd=cwd or ROOT,
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
        """Kill what is left: the process, its group, and its children in groups of their own
        (`nurture run` starts its services so), so that a failed test leaves no server behind."""
        if self.process.poll() is None:
            for child in _children(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._master)


def _children(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid` (from /proc: Linux, as the pty tests are)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """The text without colour and cursor codes, and with the pty's CRLF as LF."""
    return ANSI.sub("", text).replace("\r\n", "\n")
