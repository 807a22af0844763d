"""What the benchmarks share: options, result rows, bench content, databases, people, timing."""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import procstat

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_SEQUENCE = "bench"
"""One step, sent at any hour: windows never hold a bench delivery back."""
BENCH_TWO_STEPS = "bench-two"
"""Two steps, so that recording a send also queues the next delivery."""
SENDER = "Bench <bench@bench.test>"
MESSAGE_ID_DOMAIN = "bench.test"
BASE_URL = "https://bench.test"
POSTAL_ADDRESS = "Nurture Bench, 1 Benchmark Road, Testville"
SECRET_KEY = "bench-secret-key-" + "x" * 16


@dataclass
class Options:
    quick: bool = False
    tick: float = 5.0
    postgres_url: str = field(default_factory=lambda: os.environ.get(
        "NURTURE_BENCH_POSTGRES_URL",
        os.environ.get("NURTURE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)))
    personas: int | None = None
    """render: use only the first N personas of the matrix (the smoke test uses a few)."""
    emails: int | None = None
    """end to end: override the number of queued deliveries."""
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    log: Any = None
    """A callable taking one progress line; None prints to stderr."""

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)
        else:
            sys.stderr.write(f"  {text}\n")
            sys.stderr.flush()

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def row(benchmark: str, *, measured: str, baseline: str, ratio: float | None, target: str,
        met: bool | None, measured_value: float | None = None, baseline_value: float | None = None,
        unit: str = "", note: str = "") -> dict[str, Any]:
    """One line of the report table; `met` is None when the benchmark could not run."""
    return {
        "benchmark": benchmark,
        "measured": measured,
        "baseline": baseline,
        "ratio": None if ratio is None or not math.isfinite(ratio) else round(ratio, 3),
        "target": target,
        "met": met,
        "measured_value": measured_value,
        "baseline_value": baseline_value,
        "unit": unit,
        "note": note,
    }


def result(name: str, rows: list[dict[str, Any]], details: dict[str, Any],
           notes: Sequence[str] = ()) -> dict[str, Any]:
    return {"name": name, "rows": rows, "details": details, "notes": list(notes)}


# -- formatting ----------------------------------------------------------------------------------

def print_rows(res: dict[str, Any]) -> None:
    """A benchmark's rows as a Markdown table's lines, then its notes: what its own `main` prints."""
    for item in res["rows"]:
        ratio = "" if item["ratio"] is None else f"{item['ratio']:.3f}"
        print(f"| {item['benchmark']} | {item['measured']} | {item['baseline']} | {ratio} | "
              f"{item['target']} | {item['met']} |" + (f" {item['note']}" if item["note"] else ""))
    for note in res["notes"]:
        print(f"- {note}")


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f} emails/s"


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_bytes(count: float) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = math.floor(k), math.ceil(k)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- logging -------------------------------------------------------------------------------------

def quiet_logging() -> None:
    """Only errors from the product and its libraries: benchmarks print their own progress."""
    logging.basicConfig(level=logging.ERROR)
    for name in ("cssutils", "CSSUTILS", "mail.log", "aiosmtpd", "alembic", "apscheduler",
                 "nurture", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- content -------------------------------------------------------------------------------------

_LONG_STEP_YAML = """\
  - key: one
    delay: 0h
    template: bench/long.md
    subject: "{% if first_name %}{{ first_name }}, a{% else %}A{% endif %} note for this week"
    preheader: A longer note, about the size of a real one
    discreet_subject: Your weekly notes
    discreet_preheader: A short note
"""
"""The first step of both bench sequences: the ~12 KB note."""

BENCH_SEQUENCE_YAML = """\
# Written by the benchmarks: one step, any hour of any day, so windows never hold a send back.
key: bench
name: Bench, one step
window:
  hours: "00:00-24:00"
steps:
""" + _LONG_STEP_YAML

BENCH_TWO_STEPS_YAML = """\
# Written by the benchmarks: two steps, so recording a send queues the next delivery.
key: bench-two
name: Bench, two steps
window:
  hours: "00:00-24:00"
steps:
""" + _LONG_STEP_YAML + """\
  - key: two
    delay: 1d
    template: sample/next-steps.md
    subject: One small step you can take this week
    preheader: Starting on your own is a real option
    discreet_subject: Another note for you
    discreet_preheader: Something small to try this week
"""


@dataclass(frozen=True)
class BenchContent:
    root: Path
    sequences_dir: Path
    templates_dir: Path


def make_bench_content(directory: Path) -> BenchContent:
    """A copy of templates/ plus a bench-only body (the three sample notes as one, ~12 KB as a
    message) and the bench sequences, in `directory`; the shipped sequences are not used."""
    templates = directory / "templates"
    sequences = directory / "sequences"
    shutil.copytree(ROOT / "templates", templates)
    sequences.mkdir(parents=True)
    sample = ROOT / "templates" / "emails" / "sample"
    parts = [(sample / name).read_text(encoding="utf-8").strip()
             for name in ("welcome.md", "understanding.md", "next-steps.md")]
    # One greeting and one sign-off, then the three bodies: a long note with hesitation sections.
    bodies = [parts[0].rsplit("Take care.", 1)[0].strip()]
    bodies += [p.split("\n", 1)[1].rsplit("Take care.", 1)[0].strip() for p in parts[1:]]
    body = "\n\n".join(bodies) + "\n\nTake care.\n"
    (templates / "emails" / "bench").mkdir(parents=True, exist_ok=True)
    (templates / "emails" / "bench" / "long.md").write_text(body, encoding="utf-8")
    (sequences / "bench.yaml").write_text(BENCH_SEQUENCE_YAML, encoding="utf-8")
    (sequences / "bench-two.yaml").write_text(BENCH_TWO_STEPS_YAML, encoding="utf-8")
    return BenchContent(directory, sequences, templates)


@contextmanager
def scratch_dir(prefix: str = "nurture-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the product's parts, wired for a benchmark ---------------------------------------------------

def brand() -> Any:
    from nurture.rendering.types import Brand

    return Brand(sender=SENDER, discreet_sender_name="Weekly notes", postal_address=POSTAL_ADDRESS,
                 base_url=BASE_URL)


def link_maker() -> Any:
    from nurture.engine.tokens import LinkMaker, TokenSigner

    return LinkMaker(base_url=BASE_URL, signer=TokenSigner(SECRET_KEY),
                     unsubscribe_mailto="unsubscribe@bench.test")


def make_dispatcher(store: Any, content: Any, smtp_port: int, *, owner: str = "bench",
                    batch_size: int = 200, transport: Any = None) -> Any:
    from datetime import timedelta

    from nurture.engine.dispatcher import Dispatcher
    from nurture.engine.policy import DispatchPolicy
    from nurture.setting_values import parse_smtp_url
    from nurture.smtp.transports import SmtpTransport

    if transport is None:
        transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{smtp_port}"), timeout=60)
    return Dispatcher(store=store, transport=transport, content=content, brand=brand(),
                      links=link_maker(), owner=owner, message_id_domain=MESSAGE_ID_DOMAIN,
                      policy=DispatchPolicy(batch_size=batch_size, lease=timedelta(minutes=30)))


def data_key() -> str | None:
    """The key names are encrypted with at rest, the same in this process and in every child
    (None when this version of the product encrypts nothing). Configured here on first use."""
    try:
        from nurture.store import crypto
    except ImportError:
        return None
    key: str = crypto.derived_key(SECRET_KEY)
    crypto.configure(crypto.KeyRing([key]))
    return key


def scheduler_env(*, database_url: str, smtp_port: int, content: BenchContent, tick: float,
                  batch_size: int = 200) -> dict[str, str]:
    """The environment of a `nurture scheduler` child: only bench settings, no NURTURE_* leaks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update({
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NURTURE_SEQUENCES_DIR": str(content.sequences_dir),
        "NURTURE_TEMPLATES_DIR": str(content.templates_dir),
        "NURTURE_TICK_SECONDS": str(tick),
        "NURTURE_BATCH_SIZE": str(batch_size),
        "NURTURE_SENDER": SENDER,
        "NURTURE_BASE_URL": BASE_URL,
        "NURTURE_SECRET_KEY": SECRET_KEY,
        "NURTURE_POSTAL_ADDRESS": POSTAL_ADDRESS,
        "NURTURE_LOG_LEVEL": "INFO",
        "NURTURE_LEASE_SECONDS": "600",
    })
    key = data_key()
    if key is not None:
        env["NURTURE_DATA_KEYS"] = key
    return env


class SchedulerProcess:
    """`python -m nurture scheduler` as a child, output in files, started and stopped by pid."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.env = env
        self.workdir = workdir
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SchedulerProcess:
        with open(self.stderr_path, "wb") as stderr, open(os.devnull, "wb") as stdout:
            # cwd: a scratch folder, so no .env file of the repository is read.
            self.process = subprocess.Popen([sys.executable, "-m", "nurture", "scheduler"],
                                            env=self.env, cwd=self.workdir, stdout=stdout,
                                            stderr=stderr, stdin=subprocess.DEVNULL)
        return self

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"scheduler {self.name} exited with {self.process.returncode}: "
                                   f"{self.stderr_tail()}")
            if b'"scheduler started"' in self.stderr_path.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"scheduler {self.name} did not start in {timeout} s: {self.stderr_tail()}")

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def error_counts(self) -> dict[str, int]:
        """Error log lines of the child, by error type (its log is JSON, one object a line)."""
        import json

        counts: dict[str, int] = {}
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return counts
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                kind = str(entry.get("error_type") or entry.get("event"))
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def stop(self, timeout: float = 60) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


# -- databases -----------------------------------------------------------------------------------

def conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_problem(admin_url: str) -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(conninfo(admin_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL unreachable: {str(error).strip()}"
    return None


def postgres_version(admin_url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(conninfo(admin_url), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


@contextmanager
def database(backend: str, options: Options, workdir: Path, *, migrate: bool = True) -> Iterator[str]:
    """A fresh, migrated database on `backend`; a PostgreSQL one is dropped afterwards."""
    from nurture.store.database import upgrade

    data_key()  # before anything is written: children decrypt with the same key

    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        if migrate:
            upgrade(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm", ".scheduler.lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"nurture_bench_{uuid.uuid4().hex[:12]}"
    admin = conninfo(options.postgres_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(options.postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def backends_available(options: Options) -> tuple[list[str], dict[str, str]]:
    """The backends to run and, for the others, why they are skipped."""
    run: list[str] = []
    skipped: dict[str, str] = {}
    for backend in options.backends:
        if backend == "postgresql":
            problem = postgres_problem(options.postgres_url)
            if problem:
                skipped[backend] = problem
                continue
        run.append(backend)
    return run, skipped


# -- people --------------------------------------------------------------------------------------

TRICKY_NAME = "<b>&\"'"


def people(count: int, *, prefix: str = "p") -> list[Any]:
    """`count` valid, already normalized people over a matrix of hesitations, names, discreet
    mode and locales: a few dozen distinct email structures, as a real list would have."""
    from nurture.domain.people import Person

    reason_sets = [frozenset(), frozenset({"stigma"}), frozenset({"fear_of_blame"}),
                   frozenset({"stigma", "fear_of_blame"}), frozenset({"unfamiliar", "not_sure"})]
    matrix = list(itertools.product(reason_sets, ("Asha", None, "Zoë", TRICKY_NAME),
                                    (False, True), ("en", "en-IN")))
    zones = ("UTC", "Europe/London", "Asia/Kolkata", "America/New_York")
    out = []
    for index in range(count):
        reasons, name, discreet, locale = matrix[index % len(matrix)]
        out.append(Person(email=f"{prefix}{index}@example.org", first_name=name,
                          time_zone=zones[index % len(zones)], hesitations=reasons,
                          discreet=discreet, locale=locale))
    return out


def enroll_people(store: Any, content: Any, sequence_key: str, persons: Sequence[Any], *,
                  now: datetime, due: Sequence[datetime] | None = None, chunk: int = 5000) -> int:
    """Bulk SqlStore.enroll; with `due`, person i's first delivery is planned from due[i]."""
    from nurture.engine.enrollment import new_enrollment
    from nurture.engine.ports import ConsentRecord

    consent = ConsentRecord(kind="import", source="bench")
    created = 0
    for start in range(0, len(persons), chunk):
        items = [new_enrollment(person, content, sequence_key, consent,
                                due[start + offset] if due is not None else now)
                 for offset, person in enumerate(persons[start:start + chunk])]
        created += sum(1 for r in store.enroll(items, now=now) if r.created)
    return created


def count_statuses(store: Any) -> dict[str, int]:
    result: dict[str, int] = store.counts_by_status()
    return result


# -- timing --------------------------------------------------------------------------------------

class Stopwatch:
    """Accumulates seconds per phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (Linux /proc); NaN when it is gone."""
    return procstat.cpu_seconds(pid)


# -- raw smtplib blasts (the baselines of e2e and scale-out) --------------------------------------

BLAST_MODES = ("thread", "process")
"""How a blast over several connections runs: threads of this process, or forked processes (one
per connection, so that each can have a core of its own)."""


def _blast_share(port: int, share: Sequence[tuple[str, bytes]], ready: Any, times: Any) -> None:
    """One connection's part of a blast: connect and greet, wait for the others, send `share`, and
    put (start, end, error) in `times` (perf_counter is system-wide on Linux: CLOCK_MONOTONIC)."""
    import smtplib
    from email.utils import parseaddr

    sender = parseaddr(SENDER)[1]
    started = math.nan
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo()
            ready.wait()
            started = time.perf_counter()
            for to, data in share:
                smtp.sendmail(sender, [to], data)
            times.put((started, time.perf_counter(), ""))
    except Exception as error:  # the parent raises it: a blast must not hang on a dead sender
        times.put((started, math.nan, f"{type(error).__name__}: {error}"))
        if hasattr(ready, "abort"):
            ready.abort()


def raw_blast(port: int, messages: Sequence[tuple[str, bytes]], *, connections: int = 1,
              mode: str = "process", timeout: float = 600) -> float:
    """Seconds a raw smtplib blast of `messages` (to, data) takes over `connections` persistent
    connections to 127.0.0.1:`port`, the messages dealt out evenly; every connection is open and
    greeted before the clock starts, and the time runs from the first start to the last end. One
    connection runs here; several run as threads of this process or as forked processes (`mode`),
    one per connection."""
    import multiprocessing
    import queue
    import threading

    if mode not in BLAST_MODES:
        raise ValueError(f"mode must be one of {BLAST_MODES}, not {mode!r}")
    shares = [messages[i::connections] for i in range(connections)]
    workers: list[Any] = []
    if connections == 1:
        times: Any = queue.SimpleQueue()
        _blast_share(port, shares[0], threading.Barrier(1), times)
    elif mode == "thread":
        ready: Any = threading.Barrier(connections, timeout=60)
        times = queue.SimpleQueue()
        workers = [threading.Thread(target=_blast_share, args=(port, share, ready, times),
                                    daemon=True, name=f"raw blast {i}")
                   for i, share in enumerate(shares)]
    else:
        # fork: the children see the messages without pickling them (Linux, as the bench is).
        context = multiprocessing.get_context("fork")
        ready = context.Barrier(connections, timeout=60)
        times = context.Queue()
        workers = [context.Process(target=_blast_share, args=(port, share, ready, times),
                                   daemon=True, name=f"raw blast {i}")
                   for i, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    try:
        spans = [times.get(timeout=timeout) for _ in shares]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if isinstance(worker, multiprocessing.process.BaseProcess) and worker.is_alive():
                worker.kill()
                worker.join()
    errors = [error for _, _, error in spans if error]
    if errors:
        raise RuntimeError(f"raw blast over {connections} connection(s): {errors[0]}")
    return float(max(end for _, end, _ in spans) - min(start for start, _, _ in spans))
