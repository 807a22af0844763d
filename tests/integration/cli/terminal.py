"""Running the `nurture` command as a person at a terminal would: stdout and stderr on a
pseudo-terminal of a set size, colour allowed."""

from __future__ import annotations

import fcntl
import os
import pty
import select
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


def terminal_env(env: dict[str, str]) -> dict[str, str]:
    shown = {k: v for k, v in env.items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "CI")}
    shown["TERM"] = "xterm-256color"
    return shown


def on_terminal(*args: str, env: dict[str, str], stdout_too: bool = True,
                stdin: bytes | None = None, timeout: float = 120) -> Run:
    """Run `nurture *args` with stderr (and stdout unless `stdout_too` is False) on a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture", *args], env=terminal_env(env), cwd=ROOT,
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


def write_csv(path: Path, count: int) -> Path:
    rows = [f"person{i}@example.org,P{i},Europe/London,stigma" for i in range(count)]
    path.write_text("email,first_name,time_zone,hesitations\n" + "\n".join(rows) + "\n")
    return path
