"""CPU budget per email: where the CPU time of sending one email goes, stage by stage and process by
process, for one Dispatcher on SQLite, one on PostgreSQL, and two at once on one PostgreSQL database.

N queued deliveries (bench content, one-step sequence, enrolled in bulk as bench/e2e.py does) are sent
by Dispatchers in spawned worker processes (each with its own Dispatcher, store, and ProcessTransport,
as `nurture scheduler` sends) into Postfix's smtp-sink (C, so it costs next to nothing). Each worker
first sends one warm-up batch (imports, caches, the relay child's start and its SMTP session stay out
of the budget), then all workers start together and send until nothing is due.

Measured, all as CPU time (user + system), never wall time:
- the in-process stages, by the timers of bench/e2e.py (TimedStore, TimedTransport, TimedLibrary,
  TimedLinks, timed_build_message, imported, not copied) fed a Stopwatch that counts the calling
  thread's CPU time (`time.thread_time()`) instead of wall time; the Dispatcher is single-threaded,
  so its thread's CPU is the CPU spent in the stage;
- "other": the worker's process CPU (`time.process_time()`) over the run minus those stages (the
  dispatcher's own logic: decide, pacing, throttle, outcomes, logging, the run loop);
- the SMTP client: the relay child of each ProcessTransport, utime + stime from /proc/<pid>/stat;
- the database: every PostgreSQL backend connected to the scratch database (pg_stat_activity by
  datname, sampled every 0.1 s so short-lived ones count too), /proc/<pid>/stat; on SQLite it runs
  inside the dispatcher, within claim / re-check / record;
- smtp-sink, /proc/<pid>/stat.
PostgreSQL's server-wide background processes (WAL writer, checkpointer, background writer) are shown
apart and left out of the total: other databases on the same server use them too.

`.venv/bin/python -m bench.cpu_budget [--quick] [--emails N] [--backends sqlite,postgresql]`
(10,000 emails; --quick 2,000).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench import procstat
from bench.common import (
    BENCH_SEQUENCE,
    Options,
    Stopwatch,
    backends_available,
    conninfo,
    data_key,
    database,
    enroll_people,
    fmt_rate,
    make_bench_content,
    make_dispatcher,
    people,
    process_cpu_seconds,
    quiet_logging,
    result,
    row,
    scratch_dir,
)
from bench.e2e import TimedLibrary, TimedLinks, TimedStore, TimedTransport, timed_build_message
from bench.smtp_sink import SinkProcess

if TYPE_CHECKING:
    from nurture.rendering.library import TemplateLibrary

NAME = "cpu_budget"
TARGET = "recorded, no target: CPU µs per email by stage, to compare before/after a change"
BATCH = 200
"""The Dispatcher's default batch size."""
WARMUP_BATCHES = 1
"""Claims each worker sends before the measured run."""
SAMPLE_SECONDS = 0.1
"""How often the PostgreSQL backends of the scratch database are looked up and read."""
WAIT_SECONDS = 900.0
"""The longest a worker may take to get ready, or to send its share."""

# (timer name in the worker, row label); the timer names are those of bench/e2e.py.
IN_PROCESS_STAGES: tuple[tuple[str, str], ...] = (
    ("claim", "claim (store.claim_due)"),
    ("recheck", "live re-check (store.recheck)"),
    ("links", "links (links.for_subscriber)"),
    ("render", "render (library.render)"),
    ("build_message", "MIME (build_message)"),
    ("hand-over to the relay process", "hand-over (transport.begin)"),
    ("waiting for the relay", "replies (transport.finish)"),
    ("record", "record (store.record)"),
    ("release", "release (store.release)"),
)
BACKGROUND_TYPES = ("walwriter", "checkpointer", "background writer")


# -- the worker: one Dispatcher in its own process -----------------------------------------------

class CpuStopwatch(Stopwatch):
    """A Stopwatch whose `seconds` are the calling thread's CPU time (`time.thread_time()`);
    the wall time of each phase is kept apart in `wall`."""

    def __init__(self) -> None:
        super().__init__()
        self.wall: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.thread_time() - cpu)
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.wall.clear()


class CpuTimedStore(TimedStore):
    """bench/e2e.py's TimedStore, with the live re-check timed too."""

    def recheck(self, delivery_ids: Any, **kwargs: Any) -> Any:
        with self._watch.phase("recheck"):
            return self._store.recheck(delivery_ids, **kwargs)


@dataclass(frozen=True)
class Job:
    index: int
    database_url: str
    smtp_port: int
    sequences_dir: str
    templates_dir: str
    batch_size: int = BATCH


def timer_cost(calls: int = 20_000) -> float:
    """CPU seconds one CpuStopwatch phase costs (two clock reads and the bookkeeping)."""
    watch = CpuStopwatch()
    started = time.process_time()
    for _ in range(calls):
        with watch.phase("x"):
            pass
    return (time.process_time() - started) / calls


def thread_count() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return threading.active_count()


def _send(job: Job, ready: Any, start: Event, results: Any, release: Event) -> None:
    from nurture.clock import utcnow
    from nurture.content.library import ContentHolder
    from nurture.engine.dispatch_run import DispatchReport
    from nurture.setting_values import parse_smtp_url
    from nurture.smtp.relay_process import ProcessTransport
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    quiet_logging()
    data_key()
    holder = ContentHolder(Path(job.sequences_dir), Path(job.templates_dir))
    engine = make_engine(job.database_url)
    watch = CpuStopwatch()
    # The timer stands in for the library (as in bench/e2e.py): it has the same render.
    content = replace(holder.current,
                      library=cast("TemplateLibrary", TimedLibrary(holder.current.library, watch)))
    transport = ProcessTransport(parse_smtp_url(f"smtp://127.0.0.1:{job.smtp_port}"), timeout=60)
    dispatcher = make_dispatcher(CpuTimedStore(SqlStore(engine), watch), lambda: content,
                                 job.smtp_port, owner=f"cpu-budget-{job.index}",
                                 batch_size=job.batch_size,
                                 transport=TimedTransport(transport, watch))
    dispatcher.links = TimedLinks(dispatcher.links, watch)
    try:
        with timed_build_message(watch):
            warm = dispatcher.run(utcnow(), max_batches=WARMUP_BATCHES)
            child = transport.pid
            ready.put({"index": job.index, "warmup_sent": warm.sent, "pid": os.getpid(),
                       "relay_pid": child})
            if not start.wait(WAIT_SECONDS):
                raise TimeoutError("never told to start")
            watch.clear()
            child_cpu = process_cpu_seconds(child) if child is not None else float("nan")
            cpu, began = time.process_time(), time.monotonic()
            total = DispatchReport()
            while not dispatcher.stopping:
                report = dispatcher.run(utcnow())
                total.add(report)
                if report.claimed == 0:
                    break
            ended = time.monotonic()
            cpu = time.process_time() - cpu
            relay_pid = transport.pid
            child_cpu = (process_cpu_seconds(relay_pid) - child_cpu
                         if relay_pid is not None and relay_pid == child else float("nan"))
        results.put({
            "index": job.index,
            "began": began,
            "ended": ended,
            "process_cpu": cpu,
            "relay_cpu": child_cpu,
            "relay_pid_changed": relay_pid != child,
            "stage_cpu": dict(watch.seconds),
            "stage_wall": dict(watch.wall),
            "stage_calls": dict(watch.calls),
            "report": total.as_dict(),
            "warmup_sent": warm.sent,
            "threads": thread_count(),
            "thread_names": sorted(t.name for t in threading.enumerate()),
            "timer_cost": timer_cost(),
        })
        # The connections stay open until the parent has read the PostgreSQL backends' CPU: a
        # closed connection's backend is gone from /proc.
        release.wait(WAIT_SECONDS)
    finally:
        transport.close()
        engine.dispose()


def worker(job: Job, ready: Any, start: Event, results: Any, release: Event) -> None:
    """A spawned process: one Dispatcher, warmed up, then timed from `start` until nothing is due."""
    try:
        _send(job, ready, start, results, release)
    except BaseException:
        error = traceback.format_exc()
        results.put({"index": job.index, "error": error})
        ready.put({"index": job.index, "error": error})


# -- the parent: processes outside the workers ---------------------------------------------------

def child_pids(name: str) -> list[int]:
    """Children of this process whose command name is `name` (from /proc)."""
    return [pid for pid in procstat.children(os.getpid()) if procstat.command_name(pid) == name]


@dataclass
class BackendMeter:
    """CPU of PostgreSQL server processes: those connected to one database (client backends,
    autovacuum workers), sampled until stopped so that short-lived ones count too, and the
    server-wide background ones apart."""

    admin_url: str
    datname: str
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: Any = None

    def _pids(self) -> list[tuple[int, str, bool]]:
        rows = self._conn.execute(
            "SELECT pid, backend_type, datname = %s FROM pg_stat_activity "
            "WHERE datname = %s OR (datname IS NULL AND backend_type = ANY(%s))",
            (self.datname, self.datname, list(BACKGROUND_TYPES))).fetchall()
        return [(int(pid), str(kind), bool(ours)) for pid, kind, ours in rows]

    def sample(self, *, baseline: bool = False) -> None:
        for pid, kind, ours in self._pids():
            seconds = process_cpu_seconds(pid)
            if seconds != seconds:  # gone already
                continue
            if pid not in self.first:
                # Seen at the start: count from now; born during the run: all its CPU is ours.
                self.first[pid] = seconds if baseline or not ours else 0.0
                self.kinds[pid] = kind if ours else f"server-wide {kind}"
            self.last[pid] = seconds

    def start(self) -> None:
        import psycopg

        self._conn = psycopg.connect(conninfo(self.admin_url), autocommit=True)
        self.sample(baseline=True)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pg backend meter")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds since `start` by backend type."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self._conn.close()
        by_kind: dict[str, float] = {}
        for pid, seconds in self.last.items():
            kind = self.kinds[pid]
            by_kind[kind] = by_kind.get(kind, 0.0) + seconds - self.first[pid]
        return by_kind


# -- one configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    backend: str
    processes: int

    @property
    def label(self) -> str:
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[self.backend]
        return f"{name}, {self.processes} dispatcher process{'es' if self.processes > 1 else ''}"

    @property
    def key(self) -> str:
        return f"{self.backend}-{self.processes}"


def _collect(mp_queue: Any, processes: list[Any], count: int, what: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(got) < count:
        try:
            item = mp_queue.get(timeout=1.0)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not {what} in {WAIT_SECONDS:.0f} s") from None
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker died (exit {dead[0].exitcode}) before {what}") from None
            continue
        if "error" in item:
            raise RuntimeError(f"worker {item['index']} failed:\n{item['error']}")
        got.append(item)
    return got


def measure(config: Config, options: Options, work: Path, files: Any, holder: Any,
            emails: int) -> dict[str, Any]:
    """Send `emails` deliveries (after each worker's warm-up batch) and take every process's CPU."""
    from sqlalchemy.engine import make_url

    from nurture.clock import utcnow
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    warmup = WARMUP_BATCHES * BATCH * config.processes
    with database(config.backend, options, work) as url, SinkProcess() as sink:
        engine = make_engine(url)
        try:
            enrolled = enroll_people(SqlStore(engine), holder.current, BENCH_SEQUENCE,
                                     people(emails + warmup, prefix=f"{config.key}-"),
                                     now=utcnow() - timedelta(minutes=1))
        finally:
            engine.dispose()  # no connection of this process may count as the run's database work
        options.say(f"{NAME} {config.label}: enrolled {enrolled:,}")
        context = multiprocessing.get_context("spawn")
        ready, results = context.Queue(), context.Queue()
        start, release = context.Event(), context.Event()
        jobs = [Job(i, url, sink.port, str(files.sequences_dir), str(files.templates_dir))
                for i in range(config.processes)]
        processes = [context.Process(target=worker, args=(job, ready, start, results, release),
                                     name=f"cpu-budget-{config.key}-{job.index}")
                     for job in jobs]
        for process in processes:
            process.start()
        meter: BackendMeter | None = None
        try:
            readies = _collect(ready, processes, config.processes, "ready")
            sink_pids = child_pids("smtp-sink")
            sink_cpu = sum(process_cpu_seconds(pid) for pid in sink_pids)
            if config.backend == "postgresql":
                meter = BackendMeter(options.postgres_url, str(make_url(url).database))
                meter.start()
            start.set()
            outcomes = _collect(results, processes, config.processes, "done")
            database_cpu = meter.stop() if meter is not None else {}
            meter = None
            sink_cpu = sum(process_cpu_seconds(pid) for pid in sink_pids) - sink_cpu
            warm_sent = sum(int(r["warmup_sent"]) for r in readies)
            sent = sum(int(o["report"]["sent"]) for o in outcomes)
            arrived = sink.wait_for(warm_sent + sent, 30)
        finally:
            if meter is not None:
                meter.stop()
            release.set()
            for process in processes:
                process.join(timeout=60)
                if process.is_alive():
                    process.kill()
                    process.join()
    return summarize(config, outcomes, database_cpu=database_cpu, sink_cpu=sink_cpu,
                     arrived=arrived - warm_sent, sink_found=bool(sink_pids))


def summarize(config: Config, outcomes: list[dict[str, Any]], *, database_cpu: dict[str, float],
              sink_cpu: float, arrived: int, sink_found: bool) -> dict[str, Any]:
    sent = sum(int(o["report"]["sent"]) for o in outcomes)
    n = max(sent, 1)
    wall = max(o["ended"] for o in outcomes) - min(o["began"] for o in outcomes)
    stage_cpu: dict[str, float] = {}
    stage_wall: dict[str, float] = {}
    calls: dict[str, int] = {}
    for outcome in outcomes:
        for name, seconds in outcome["stage_cpu"].items():
            stage_cpu[name] = stage_cpu.get(name, 0.0) + seconds
            stage_wall[name] = stage_wall.get(name, 0.0) + outcome["stage_wall"][name]
            calls[name] = calls.get(name, 0) + int(outcome["stage_calls"][name])
    process_cpu = sum(float(o["process_cpu"]) for o in outcomes)
    process_wall = sum(float(o["ended"]) - float(o["began"]) for o in outcomes)
    relay_cpu = sum(float(o["relay_cpu"]) for o in outcomes)

    def us(seconds: float) -> float:
        return seconds / n * 1e6

    stages: list[dict[str, Any]] = []
    for name, label in IN_PROCESS_STAGES:
        if name == "release" and name not in stage_cpu:
            continue
        stages.append({"stage": label, "where": "dispatcher", "us": us(stage_cpu.get(name, 0.0)),
                       "wall_us": us(stage_wall.get(name, 0.0)), "calls": calls.get(name, 0)})
    measured_in_process = sum(stage_cpu.values())
    stages.append({"stage": "other (dispatcher logic, run loop, logging)", "where": "dispatcher",
                   "us": us(process_cpu - measured_in_process),
                   "wall_us": us(process_wall - sum(stage_wall.values())), "calls": None})
    stages.append({"stage": "SMTP client (relay child process)", "where": "relay child",
                   "us": us(relay_cpu), "wall_us": None, "calls": None})
    in_db = {k: v for k, v in database_cpu.items() if not k.startswith("server-wide")}
    if config.backend == "postgresql":
        for kind in sorted(in_db, key=lambda k: (k != "client backend", k)):
            label = ("database (PostgreSQL client backends)" if kind == "client backend"
                     else f"database ({kind})")
            stages.append({"stage": label, "where": "postgresql", "us": us(in_db[kind]),
                           "wall_us": None, "calls": None})
    else:
        stages.append({"stage": "database (SQLite: inside claim / re-check / record)",
                       "where": "dispatcher", "us": None, "wall_us": None, "calls": None})
    stages.append({"stage": "smtp-sink (the relay)", "where": "sink",
                   "us": us(sink_cpu) if sink_found else None, "wall_us": None, "calls": None})
    total_us = sum(s["us"] for s in stages if s["us"] is not None and s["us"] == s["us"])
    for stage in stages:
        value = stage["us"]
        stage["share"] = value / total_us if value is not None and total_us > 0 else None
    background = {k.removeprefix("server-wide "): us(v) for k, v in database_cpu.items()
                  if k.startswith("server-wide")}
    cost = max(float(o["timer_cost"]) for o in outcomes)
    return {
        "config": config.label,
        "backend": config.backend,
        "processes": config.processes,
        "emails": sent,
        "sent_by_process": [int(o["report"]["sent"]) for o in sorted(outcomes, key=lambda o: o["index"])],
        "arrived_at_sink": arrived,
        "report": {k: sum(int(o["report"][k]) for o in outcomes) for k in outcomes[0]["report"]},
        "wall_seconds": wall,
        "emails_per_second": sent / wall if wall > 0 else float("nan"),
        "stages": stages,
        "dispatcher_us": us(process_cpu),
        "total_us": total_us,
        "server_wide_background_us": background,
        "timer_us_per_email": cost * sum(calls.values()) / n * 1e6,
        "worker_threads": max(int(o["threads"]) for o in outcomes),
        "thread_names": sorted({name for o in outcomes for name in o["thread_names"]}),
        "relay_restarted": any(o["relay_pid_changed"] for o in outcomes),
    }


# -- output --------------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:,.{digits}f}"


def table(outcome: dict[str, Any]) -> list[str]:
    """The configuration's budget as text lines."""
    head = (f"{outcome['config']}: {outcome['emails']:,} emails in {outcome['wall_seconds']:.2f} s, "
            f"{fmt_rate(outcome['emails_per_second'])}")
    if len(outcome["sent_by_process"]) > 1:
        head += " (sent by each process: " + ", ".join(f"{n:,}" for n in outcome["sent_by_process"]) + ")"
    lines = [head, ""]
    width = max(len(s["stage"]) for s in outcome["stages"]) + 2
    lines.append(f"{'stage':<{width}}{'µs CPU/email':>14}{'share':>8}{'µs wall/email':>15}")
    lines.append("-" * (width + 37))
    for stage in outcome["stages"]:
        share = stage["share"]
        lines.append(f"{stage['stage']:<{width}}{_num(stage['us']):>14}"
                     f"{(f'{share:.1%}' if share is not None else '—'):>8}"
                     f"{_num(stage['wall_us']):>15}")
    lines.append("-" * (width + 37))
    lines.append(f"{'dispatcher process (the rows in it)':<{width}}{_num(outcome['dispatcher_us']):>14}"
                 f"{outcome['dispatcher_us'] / outcome['total_us']:>8.1%}")
    lines.append(f"{'total CPU per email, all processes':<{width}}{_num(outcome['total_us']):>14}"
                 f"{1:>8.0%}")
    background = outcome["server_wide_background_us"]
    if background:
        lines.append("  not in the total, shared with the whole server: " + ", ".join(
            f"{kind} {value:,.1f} µs" for kind, value in sorted(background.items())))
    lines.append(f"  timers: about {outcome['timer_us_per_email']:.1f} µs/email of the dispatcher's "
                 f"CPU is the timers themselves; worker threads: {outcome['worker_threads']} "
                 f"({', '.join(outcome['thread_names'])})")
    if outcome["arrived_at_sink"] != outcome["emails"] or outcome["relay_restarted"]:
        lines.append(f"  WARNING: sink received {outcome['arrived_at_sink']:,} of {outcome['emails']:,}"
                     f"; relay child restarted: {outcome['relay_restarted']}")
    return lines


def markdown(outcome: dict[str, Any]) -> str:
    lines = [f"**{outcome['config']}**: {outcome['emails']:,} emails, "
             f"{fmt_rate(outcome['emails_per_second'])}", "",
             "| stage | µs CPU/email | share |", "|---|---:|---:|"]
    for stage in outcome["stages"]:
        share = stage["share"]
        lines.append(f"| {stage['stage']} | {_num(stage['us'])} | "
                     f"{f'{share:.1%}' if share is not None else '—'} |")
    lines.append(f"| *dispatcher process* | {_num(outcome['dispatcher_us'])} | "
                 f"{outcome['dispatcher_us'] / outcome['total_us']:.1%} |")
    lines.append(f"| **total, all processes** | **{_num(outcome['total_us'])}** | 100% |")
    return "\n".join(lines)


# -- the benchmark -------------------------------------------------------------------------------

def configurations(backends: list[str]) -> list[Config]:
    out = [Config("sqlite", 1)] if "sqlite" in backends else []
    if "postgresql" in backends:
        out += [Config("postgresql", 1), Config("postgresql", 2)]
    return out


def run(options: Options) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    emails = options.emails or options.pick(10_000, 2_000)
    backends, skipped = backends_available(options)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    details: dict[str, Any] = {"emails": emails, "batch_size": BATCH, "skipped_backends": skipped,
                               "cpu_clock": "thread CPU time per stage, process CPU time in total; "
                                            "/proc utime+stime for the other processes"}
    with scratch_dir() as work:
        files = make_bench_content(work)
        holder = ContentHolder(files.sequences_dir, files.templates_dir)
        for config in configurations(backends):
            try:
                outcome = measure(config, options, work, files, holder, emails)
            except Exception as error:
                summary = " ".join(str(error).split())[:140]
                rows.append(row(f"{NAME} {config.label}: failed", measured=summary, baseline="—",
                                ratio=None, target=TARGET, met=False))
                details[config.key] = {"error": traceback.format_exc()}
                continue
            details[config.key] = outcome
            details[f"{config.key}_table"] = "\n".join(table(outcome))
            details[f"{config.key}_markdown"] = markdown(outcome)
            options.say(f"{NAME} {config.label}: {outcome['total_us']:,.0f} µs CPU/email, "
                        f"{fmt_rate(outcome['emails_per_second'])}")
            top = sorted((s for s in outcome["stages"] if s["us"] is not None),
                         key=lambda s: -s["us"])[:3]
            rows.append(row(
                f"{NAME} {config.label}: {outcome['emails']:,} emails",
                measured=f"{outcome['total_us']:,.0f} µs CPU/email "
                         f"(dispatcher {outcome['dispatcher_us']:,.0f})",
                baseline=fmt_rate(outcome["emails_per_second"]), ratio=None, target=TARGET,
                met=None, measured_value=outcome["total_us"],
                baseline_value=outcome["emails_per_second"], unit="µs CPU per email",
                note="biggest: " + ", ".join(f"{s['stage']} {s['us']:,.0f}" for s in top)))
            notes.append(f"{config.label}: " + "; ".join(
                f"{s['stage']} {_num(s['us'], 0)} µs" for s in outcome["stages"])
                + f"; total {outcome['total_us']:,.0f} µs/email")
    for backend, why in skipped.items():
        rows.append(row(f"{NAME} {backend}: skipped", measured=why[:100], baseline="—", ratio=None,
                        target=TARGET, met=None))
    return result(NAME, rows, details, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_budget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 emails instead of 10,000")
    parser.add_argument("--emails", type=int, help="queued deliveries per configuration")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="sqlite (1 process) and/or postgresql (1 and 2 processes)")
    parser.add_argument("--postgres-url", help="admin URL of the PostgreSQL server")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown too")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, emails=args.emails,
                      backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()))
    if args.postgres_url:
        options.postgres_url = args.postgres_url
    # Only bench settings: an operator's NURTURE_RATE_PER_SECOND must not throttle the workers.
    for key in [k for k in os.environ if k.startswith("NURTURE_")]:
        del os.environ[key]
    load = os.getloadavg()
    res = run(options)
    for key, value in res["details"].items():
        if key.endswith("_table"):
            print(f"\n{value}")
    if args.markdown:
        for key, value in res["details"].items():
            if key.endswith("_markdown"):
                print(f"\n{value}")
    print()
    for item in res["rows"]:
        print(f"{item['benchmark']}: {item['measured']}; {item['baseline']}"
              + (f"; {item['note']}" if item["note"] else ""))
    for key, value in res["details"].items():
        if isinstance(value, dict) and "error" in value:
            print(f"\n{key} failed:\n{value['error']}", file=sys.stderr)
    print(f"\nload average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"({os.cpu_count()} CPUs)")
    return 1 if any(isinstance(v, dict) and "error" in v for v in res["details"].values()) else 0


if __name__ == "__main__":
    # The spawned workers import `bench.cpu_budget`: run that module's main, not this copy's.
    from bench.cpu_budget import main as module_main

    sys.exit(module_main())
