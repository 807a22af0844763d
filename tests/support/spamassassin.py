"""SpamAssassin fixture: Debian's spamd on a free loopback port, with the rules the package ships and
local tests only (no DNS, no network lists), scoring messages through spamc as a receiving server does.

When spamd or spamc is missing the tests that use it are skipped, or fail when
NURTURE_REQUIRE_SPAMASSASSIN=1, as CI sets it, so that CI cannot pass without scoring the emails.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import pytest

from tests.support.ports import free_port

SPAMD: Final = Path("/usr/sbin/spamd")
SPAMC: Final = Path("/usr/bin/spamc")
RULES: Final = Path("/usr/share/spamassassin")
"""The rules the Debian package ships; sa-update's downloads (/var/lib/spamassassin) are not used."""
REQUIRE_ENV: Final = "NURTURE_REQUIRE_SPAMASSASSIN"
HOST: Final = "127.0.0.1"
CHILDREN: Final = 2
"""spamd's worker processes, and the messages in flight at once (the CI machine has two cores)."""
START_TIMEOUT: Final = 60.0
# Bayes needs a site's own training and would write state between runs; the report lists the
# rules that fired with their exact scores ("RULE=0.713,..."), which the usual report rounds.
CONFIG: Final = ("use_bayes 0", "bayes_auto_learn 0", "clear_report_template", "report _TESTSSCORES(,)_")
_SCORE_LINE: Final = re.compile(r"(-?[0-9.]+)/(-?[0-9.]+)\Z")
_RULE: Final = re.compile(r"([A-Za-z0-9_]+)=(-?[0-9.]+)\Z")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Score:
    """What SpamAssassin made of one message: the total and every rule that fired, with its score."""

    total: float
    threshold: float
    rules: dict[str, float]


def parse_report(output: str) -> Score:
    """spamc -R's output with the report template above: "0.7/5.0", then "RULE=0.713,RULE=...".

    spamc prints "0/0" when it could not reach spamd; that is refused, not read as a clean score.
    """
    first, _, rest = output.partition("\n")
    match = _SCORE_LINE.match(first.strip())
    if match is None or float(match.group(2)) <= 0:
        raise AssertionError(f"spamc gave no score: {output[:300]!r}")
    rules: dict[str, float] = {}
    for item in filter(None, rest.strip().split(",")):
        rule = _RULE.match(item.strip())
        if rule is None:
            raise AssertionError(f"unexpected item {item!r} in spamc's report: {output[:300]!r}")
        rules[rule.group(1)] = float(rule.group(2))
    return Score(float(match.group(1)), float(match.group(2)), rules)


@dataclass(frozen=True)
class Spamd:
    """A running spamd and the spamc command that talks to it."""

    port: int
    version: str
    log: Path

    def check(self, message: bytes) -> Score:
        # -x: an error is an error; without it spamc passes the message through as "0/0".
        command = [str(SPAMC), "-d", HOST, "-p", str(self.port), "-x", "-R", "-t", "60"]
        done = subprocess.run(command, input=message, capture_output=True, timeout=90, check=False)
        if done.returncode not in (0, 1):
            raise AssertionError(f"spamc exited with {done.returncode}: {done.stderr.decode()[-500:]}"
                                 f"\nspamd's log: {self.log}")
        return parse_report(done.stdout.decode("utf-8", "replace"))

    def check_all(self, messages: Iterable[bytes]) -> list[Score]:
        """Scores in the order of the messages, CHILDREN at a time (spamd's workers)."""
        with ThreadPoolExecutor(max_workers=CHILDREN) as pool:
            return list(pool.map(self.check, messages))


def spamassassin_version() -> str:
    """"SpamAssassin Server version 4.0.1" from spamd itself, and the Perl it runs on."""
    done = subprocess.run([str(SPAMD), "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    return " ".join(line.strip() for line in done.stdout.splitlines()[:2])


def _command(port: int, home: Path) -> list[str]:
    command = [
        str(SPAMD), "--local", "--nouser-config", f"--configpath={RULES}",
        f"--listen={HOST}:{port}", f"--allowed-ips={HOST}", f"--max-children={CHILDREN}",
        f"--min-children={CHILDREN}", f"--min-spare={CHILDREN}", "--syslog=stderr",
        *(f"--cf={line}" for line in CONFIG),
    ]
    if os.geteuid() == 0:
        # spamd refuses to check mail as root; it would fall back to "nobody" with a warning.
        command += ["--username=nobody", f"--helper-home-dir={home}"]
    return command


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return sock.recv(64).startswith(b"SPAMD/1.5 0 PONG")
    except OSError:
        return False


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, log: Path, *,
                      last_attempt: bool) -> bool:
    """True once spamd answers; False when another process took the port first (try another)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _ping(port):
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            if "Address already in use" in tail and not last_attempt:
                return False
            _unavailable(f"{SPAMD} exited with {process.returncode} before answering:\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"{SPAMD} did not answer within {START_TIMEOUT:.0f} s; its log: {log}")
        time.sleep(0.1)
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the spamd it started, which stops its children; SIGKILL to its group if not."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spamd]:
    """spamd for the session, started on first use (about two seconds to load the rules)."""
    for path, package in ((SPAMD, "spamd"), (SPAMC, "spamc"), (RULES, "spamassassin")):
        if not path.exists():
            _unavailable(f"{path} is not installed (apt-get install spamassassin spamc spamd; "
                         f"{package} ships it)")
    folder = tmp_path_factory.mktemp("spamd")
    folder.chmod(0o755)
    log = folder / "spamd.log"
    for attempt in range(3):
        port = free_port()
        with log.open("wb") as output:
            process = subprocess.Popen(_command(port, folder), stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if _wait_until_ready(process, port, log, last_attempt=attempt == 2):
                yield Spamd(port=port, version=spamassassin_version(), log=log)
                return
        finally:
            _stop(process)
