"""Benchmark, drain: a backlog of N deliveries all due at the same instant (200,000; `--quick`
20,000) drained by real `nurture scheduler` processes on PostgreSQL into Postfix's `smtp-sink` (C),
first by one process, then, on a fresh database holding the same backlog, by two.

The backlog is enrolled in bulk (SqlStore.enroll) an hour in the past, in the bench's one-step
sequence sent at any hour; the database is then vacuumed, analyzed and checkpointed, and only then
do the schedulers start (tick 0.5 s, batch 200: the defaults but for the tick). The drain lasts from
the first message at the sink (also reported: from the first scheduler's start) until every delivery
is recorded `sent` and the sink counted them all. A thread samples the sink's counter every 0.1 s,
for the rate of the first and the last 20% of the drain (claims are ordered scans of a partial index
that stop after a batch, so the rate should not depend on how much is left).

CPU over the drain, from /proc (bench/procstat.py): each scheduler with its descendants (`nurture`
runs its SMTP connection in a child process), smtp-sink, and PostgreSQL twice: the backends of the
bench database (pg_stat_activity, sampled every 0.5 s) plus the server's background processes, and
the whole server (postmaster and every child, reaped ones included), which also holds whatever else
runs on that server. The database's share of the CPU uses the first.

Exactly-once: `sent` rows == N, distinct Message-IDs among them == N, and the sink counted exactly
N (still N a second after the end). The 1,000,000 figure is extrapolated: 1M / the measured rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import procstat
from bench.common import (
    BENCH_SEQUENCE,
    Options,
    SchedulerProcess,
    conninfo,
    database,
    enroll_people,
    fmt_rate,
    make_bench_content,
    people,
    postgres_problem,
    print_rows,
    quiet_logging,
    result,
    row,
    scheduler_env,
    scratch_dir,
)
from bench.smtp_sink import INSTALL_HINT, SinkProcess, sink_binary

NAME = "drain"
TICK = 0.5
BATCH = 200
"""The scheduler's default batch size."""
MILLION = 1_000_000
TARGET_SECONDS = 600.0
TARGET_RATE = MILLION / TARGET_SECONDS
TARGET = "1,000,000 due emails drained in under 10 minutes with two processes"
STALL_SECONDS = 120.0
"""No message at the sink for this long ends a drain as incomplete."""
SINK_POLL = 0.1
POSTGRES_POLL = 0.5


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


class PostgresCpu:
    """CPU of the PostgreSQL server: the bench database's backends and the server's background
    processes (a ledger sampled from pg_stat_activity), and the whole server tree."""

    def __init__(self, admin_url: str, database_name: str) -> None:
        import psycopg

        self._conn = psycopg.connect(conninfo(admin_url), autocommit=True, connect_timeout=5)
        self._database = database_name
        own = self._conn.execute("SELECT pg_backend_pid()").fetchone()
        assert own is not None
        postmaster = procstat.parent_pid(int(own[0]))
        if postmaster is None:
            raise RuntimeError("cannot read the PostgreSQL server's processes in /proc "
                               "(is the server on another machine or in a container?)")
        self.postmaster = postmaster
        self.excluded: set[int] = set()
        """Backends of the bench's own connections to the bench database (not the product's)."""
        self.ledger = procstat.Ledger()
        self.tree_start = procstat.TreeCpu(0.0, 0.0)
        self.tree_end = procstat.TreeCpu(0.0, 0.0)

    def sample(self) -> None:
        for pid, datname, backend_type in self._conn.execute(
                "SELECT pid, datname, backend_type FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid()").fetchall():
            if pid in self.excluded:
                continue
            if datname == self._database:
                self.ledger.observe(pid, f"bench database: {backend_type}")
            elif datname is None:
                self.ledger.observe(pid, f"server: {backend_type}")

    def begin(self) -> None:
        self.ledger.restart()
        self.sample()
        self.ledger.begin()
        self.tree_start = procstat.tree_cpu(self.postmaster)

    def end(self) -> None:
        self.sample()
        self.tree_end = procstat.tree_cpu(self.postmaster)

    def close(self) -> None:
        self._conn.close()


@dataclass
class Monitor:
    """A thread that samples the sink's counter (the timeline) and the database's CPU, and takes
    the CPU baseline of every process when the first message arrives."""

    sink: SinkProcess
    postgres: PostgresCpu
    scheduler_pids: list[int]
    sink_pid: int | None
    timeline: list[tuple[float, int]] = field(default_factory=list)
    cpu_timeline: list[tuple[int, float, float]] = field(default_factory=list)
    """(messages at the sink, schedulers' CPU, PostgreSQL's CPU) every POSTGRES_POLL seconds."""
    first_at: float | None = None
    start_cpu: dict[str, procstat.TreeCpu] = field(default_factory=dict)
    end_cpu: dict[str, procstat.TreeCpu] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def processes(self) -> dict[str, int]:
        named = {f"scheduler {i + 1}": pid for i, pid in enumerate(self.scheduler_pids)}
        if self.sink_pid is not None:
            named["smtp-sink"] = self.sink_pid
        return named

    def snapshot(self) -> dict[str, procstat.TreeCpu]:
        return {name: procstat.tree_cpu(pid) for name, pid in self.processes().items()}

    def schedulers_cpu(self) -> float:
        return sum(procstat.tree_cpu(pid).total for pid in self.scheduler_pids)

    def start(self) -> Monitor:
        self.postgres.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="drain monitor")
        self._thread.start()
        return self

    def _run(self) -> None:
        last_postgres = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            count = self.sink.messages
            if count and self.first_at is None:
                self.first_at = now
                self.start_cpu = self.snapshot()
                self.postgres.begin()
                last_postgres = now
            if not self.timeline or self.timeline[-1][1] != count:
                self.timeline.append((now, count))
            if now - last_postgres >= POSTGRES_POLL:
                self.postgres.sample()
                last_postgres = now
                if self.first_at is not None:
                    self.cpu_timeline.append((count, self.schedulers_cpu(),
                                              self.postgres.ledger.total()))
            self._stop.wait(SINK_POLL)

    def finish(self) -> None:
        """Stop sampling and take the end readings (call when the drain is over; once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.end_cpu = self.snapshot()
        self.postgres.end()
        self.timeline.append((time.monotonic(), self.sink.messages))


def _sink_pid() -> int | None:
    """The smtp-sink this process started last (SinkProcess keeps its process to itself)."""
    found = [pid for pid in procstat.children(os.getpid())
             if procstat.command_name(pid) == "smtp-sink"]
    return max(found, key=lambda pid: procstat.start_ticks(pid) or 0) if found else None


def _log_summary(scheduler: SchedulerProcess) -> tuple[int, dict[str, int]]:
    """(emails the process reports sent, error log lines by error type) from its JSON log."""
    total = 0
    errors: dict[str, int] = {}
    for line in scheduler.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("event") == "dispatch batch":
            total += int(entry.get("sent", 0))
        if entry.get("level") in ("error", "critical"):
            kind = str(entry.get("error_type") or entry.get("event"))
            errors[kind] = errors.get(kind, 0) + 1
    return total, errors


def _time_at(timeline: list[tuple[float, int]], count: float) -> tuple[float, int]:
    """The first sample at which the sink had counted at least `count` messages."""
    for at, seen in timeline:
        if seen >= count:
            return at, seen
    return timeline[-1]


def _window_rate(timeline: list[tuple[float, int]], start: float, end: float) -> float:
    """Emails/s at the sink between the samples where it had counted `start` and `end`."""
    if len(timeline) < 3:
        return math.nan
    start_at, start_seen = _time_at(timeline, start) if start > 0 else timeline[0]
    end_at, end_seen = _time_at(timeline, end)
    return (end_seen - start_seen) / (end_at - start_at) if end_at > start_at else math.nan


def _cpu_per_email(samples: list[tuple[int, float, float]], start: float,
                   end: float) -> tuple[float, float]:
    """Milliseconds of CPU per email (schedulers, PostgreSQL) while the sink's count went from
    `start` to `end`: unlike a rate, hardly changed by other work on the machine."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return math.nan, math.nan
    (first, sched0, pg0), (last, sched1, pg1) = inside[0], inside[-1]
    return 1000 * (sched1 - sched0) / (last - first), 1000 * (pg1 - pg0) / (last - first)


def _enroll(url: str, holder: Any, count: int, options: Options) -> float:
    from nurture.clock import utcnow
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    started = time.perf_counter()
    engine = make_engine(url)
    try:
        # An hour in the past: every delivery is due at that same instant when the drain starts.
        now = utcnow() - timedelta(hours=1)
        created = enroll_people(SqlStore(engine), holder.current, BENCH_SEQUENCE,
                                people(count, prefix="d"), now=now, chunk=10_000)
    finally:
        engine.dispose()
    if created != count:
        raise RuntimeError(f"enrolled {created} of {count}")
    seconds = time.perf_counter() - started
    options.say(f"drain: enrolled {count:,} due deliveries in {seconds:.1f} s")
    return seconds


def _prepare(conn: Any) -> None:
    """The same start for every drain: statistics, a clean heap, no checkpoint pending."""
    conn.execute("VACUUM (ANALYZE)")
    conn.execute("CHECKPOINT")


def _sent(conn: Any) -> int:
    found = conn.execute("SELECT count(*) FROM delivery WHERE status = 'sent'").fetchone()
    return int(found[0]) if found else 0


def measure(options: Options, work: Path, content: Any, holder: Any, processes: int, count: int,
            *, batch_size: int = BATCH) -> dict[str, Any]:
    import psycopg

    with database("postgresql", options, work) as url:
        enroll_seconds = _enroll(url, holder, count, options)
        with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=5) as conn:
            _prepare(conn)
            own = conn.execute("SELECT pg_backend_pid()").fetchone()
            postgres = PostgresCpu(options.postgres_url, _database_name(url))
            postgres.excluded.add(int(own[0]) if own else -1)
            with SinkProcess() as sink:
                env = scheduler_env(database_url=url, smtp_port=sink.port, content=content,
                                    tick=TICK, batch_size=batch_size)
                schedulers: list[SchedulerProcess] = []
                monitor: Monitor | None = None
                died = ""
                try:
                    started = time.monotonic()
                    schedulers = [SchedulerProcess(env, work, f"drain-{processes}-{i}").start()
                                  for i in range(processes)]
                    monitor = Monitor(sink, postgres,
                                      [s.process.pid for s in schedulers if s.process is not None],
                                      _sink_pid()).start()
                    seen, progress_at = 0, time.monotonic()
                    while seen < count:
                        now_seen = sink.wait_for(count, 2.0)
                        if now_seen > seen:
                            seen, progress_at = now_seen, time.monotonic()
                        dead = [s for s in schedulers if s.process is not None
                                and s.process.poll() is not None]
                        if dead:
                            died = f"{dead[0].name} exited: {dead[0].stderr_tail(3)}"
                            break
                        if time.monotonic() - progress_at > STALL_SECONDS:
                            break
                    sink_done = time.monotonic()
                    deadline = sink_done + 60
                    recorded = _sent(conn)
                    while recorded < count and time.monotonic() < deadline and not died:
                        time.sleep(0.05)
                        recorded = _sent(conn)
                    done = time.monotonic()
                    monitor.finish()
                    time.sleep(1.0)  # anything sent twice would arrive now
                    final_sink = sink.messages
                finally:
                    if monitor is not None:
                        monitor.finish()
                    codes = [s.stop() for s in schedulers]
                    postgres.close()
            statuses = {str(status): int(n) for status, n in conn.execute(
                "SELECT status, count(*) FROM delivery GROUP BY status").fetchall()}
            distinct = conn.execute("SELECT count(DISTINCT message_id) FROM delivery "
                                    "WHERE status = 'sent'").fetchone()
            unique_ids = int(distinct[0]) if distinct else 0
            vacuum = conn.execute(
                "SELECT n_dead_tup, vacuum_count, autovacuum_count, autoanalyze_count "
                "FROM pg_stat_user_tables WHERE relname = 'delivery'").fetchone()
    assert monitor is not None
    first_at = monitor.first_at if monitor.first_at is not None else done
    drain = done - first_at
    rate = count / drain if drain > 0 else math.nan
    # The first 20% after the first 1%: the processes' start-up (first renders, a second process
    # starting later than the first) is not what a backlog's size could change.
    early = _window_rate(monitor.timeline, 0.01 * count, 0.21 * count)
    early_raw = _window_rate(monitor.timeline, 0, 0.2 * count)
    late = _window_rate(monitor.timeline, 0.8 * count, count)
    early_cpu = _cpu_per_email(monitor.cpu_timeline, 0.01 * count, 0.21 * count)
    late_cpu = _cpu_per_email(monitor.cpu_timeline, 0.8 * count, count)
    cpu = {name: (monitor.end_cpu[name] - monitor.start_cpu[name])
           for name in monitor.end_cpu if name in monitor.start_cpu}
    schedulers_cpu = sum(c.total for name, c in cpu.items() if name.startswith("scheduler"))
    smtp_children = sum(c.descendants for name, c in cpu.items() if name.startswith("scheduler"))
    sink_cpu = cpu["smtp-sink"].total if "smtp-sink" in cpu else math.nan
    database_parts = postgres.ledger.by_label()
    database_cpu = postgres.ledger.total()
    server_cpu = (postgres.tree_end - postgres.tree_start).total
    total = schedulers_cpu + database_cpu + sink_cpu
    logs = [_log_summary(s) for s in schedulers]
    complete = (statuses.get("sent", 0) == count and final_sink == count and unique_ids == count
                and not died)
    measured = {
        "processes": processes, "emails": count, "batch_size": batch_size, "tick": TICK,
        "enroll_seconds": enroll_seconds,
        "start_to_first_message_s": first_at - started,
        "drain_s": drain, "drain_from_start_s": done - started,
        "sink_done_to_recorded_s": done - sink_done,
        "rate": rate, "rate_from_start": count / (done - started),
        "rate_first_20pct": early, "rate_first_20pct_with_start_up": early_raw,
        "rate_last_20pct": late,
        "cpu_ms_per_email_first_20pct": {"schedulers": early_cpu[0], "postgres": early_cpu[1]},
        "cpu_ms_per_email_last_20pct": {"schedulers": late_cpu[0], "postgres": late_cpu[1]},
        "cpu_s": {
            "schedulers": schedulers_cpu, "schedulers_smtp_children": smtp_children,
            "per_process": {name: {"own": c.own, "with_children": c.total}
                            for name, c in cpu.items()},
            "smtp_sink": sink_cpu, "postgres_bench": database_cpu,
            "postgres_bench_parts": database_parts, "postgres_server_all": server_cpu,
            "total": total,
            "database_share": database_cpu / total if total > 0 else math.nan,
            "cpu_cores_busy": total / drain if drain > 0 else math.nan,
            "ms_per_email": {"schedulers": 1000 * schedulers_cpu / count,
                             "postgres": 1000 * database_cpu / count,
                             "smtp_sink": 1000 * sink_cpu / count, "total": 1000 * total / count},
        },
        "statuses": statuses, "unique_message_ids": unique_ids, "sink_messages": final_sink,
        "delivery_table": dict(zip(("dead_tuples", "vacuums", "autovacuums", "autoanalyzes"),
                                   vacuum or (), strict=False)),
        "complete": complete, "exit_codes": codes, "died": died,
        "sent_by_process": [sent for sent, _ in logs],
        "errors_by_process": [errors for _, errors in logs],
        "timeline_samples": len(monitor.timeline),
    }
    options.say(f"drain: {processes} scheduler(s), batch {batch_size}: {count:,} in {drain:.1f} s "
                f"({fmt_rate(rate)}; first 20% {fmt_rate(early)}, last 20% {fmt_rate(late)}); "
                f"CPU schedulers {schedulers_cpu:.1f} s, PostgreSQL {database_cpu:.1f} s "
                f"(server {server_cpu:.1f} s), sink {sink_cpu:.1f} s"
                + ("" if complete else f"; INCOMPLETE: {statuses}, sink {final_sink} {died}"))
    return measured


def _cpu_text(m: dict[str, Any]) -> str:
    cpu = m["cpu_s"]
    return (f"schedulers {cpu['schedulers']:.1f} s (SMTP children "
            f"{cpu['schedulers_smtp_children']:.1f} s), PostgreSQL {cpu['postgres_bench']:.1f} s, "
            f"smtp-sink {cpu['smtp_sink']:.1f} s")


def rows_for(runs: dict[int, dict[str, Any]], count: int, batch_size: int) -> list[dict[str, Any]]:
    one, two = runs[1], runs[2]
    size = f"{count:,} due, batch {batch_size}, tick {TICK:g} s"
    complete = one["complete"] and two["complete"]
    million_minutes = MILLION / two["rate"] / 60
    rows = [
        row(f"drain: 1M due in < 10 min, 2 schedulers (extrapolated from {size})",
            measured=f"{fmt_rate(two['rate'])}: 1M in {million_minutes:.1f} min",
            baseline=f"{fmt_rate(TARGET_RATE)} needed", ratio=two["rate"] / TARGET_RATE,
            target=TARGET, met=complete and two["rate"] >= TARGET_RATE,
            measured_value=two["rate"], baseline_value=TARGET_RATE, unit="emails/s",
            note="" if complete else "not every delivery was sent exactly once"),
        row(f"drain: 2 vs 1 schedulers, {size}",
            measured=f"{fmt_rate(two['rate'])}, {two['drain_s']:.1f} s",
            baseline=f"{fmt_rate(one['rate'])}, {one['drain_s']:.1f} s",
            ratio=two["rate"] / one["rate"], target="(extra row)", met=None,
            measured_value=two["rate"], baseline_value=one["rate"], unit="emails/s"),
    ]
    for processes, m in ((1, one), (2, two)):
        rows.append(row(
            f"drain: {processes} scheduler(s), last 20% vs first 20%, {size}",
            measured=fmt_rate(m["rate_last_20pct"]), baseline=fmt_rate(m["rate_first_20pct"]),
            ratio=m["rate_last_20pct"] / m["rate_first_20pct"], target="(extra row)", met=None,
            measured_value=m["rate_last_20pct"], baseline_value=m["rate_first_20pct"],
            unit="emails/s",
            note=(f"CPU per email, first → last 20%: schedulers "
                  f"{m['cpu_ms_per_email_first_20pct']['schedulers']:.2f} → "
                  f"{m['cpu_ms_per_email_last_20pct']['schedulers']:.2f} ms, PostgreSQL "
                  f"{m['cpu_ms_per_email_first_20pct']['postgres']:.2f} → "
                  f"{m['cpu_ms_per_email_last_20pct']['postgres']:.2f} ms")))
    for processes, m in ((1, one), (2, two)):
        cpu = m["cpu_s"]
        rows.append(row(
            f"drain: {processes} scheduler(s), database share of the CPU",
            measured=f"PostgreSQL {cpu['postgres_bench']:.1f} s of {cpu['total']:.1f} s CPU",
            baseline=_cpu_text(m), ratio=cpu["database_share"], target="(extra row)", met=None,
            measured_value=cpu["postgres_bench"], baseline_value=cpu["total"], unit="CPU s"))
    return rows


def notes_for(runs: dict[int, dict[str, Any]], count: int) -> list[str]:
    notes = []
    for processes, m in sorted(runs.items()):
        cpu = m["cpu_s"]
        notes.append(
            f"{processes} scheduler(s): {count:,} drained in {m['drain_s']:.1f} s from the first "
            f"message ({fmt_rate(m['rate'])}), {m['drain_from_start_s']:.1f} s from the first "
            f"start ({fmt_rate(m['rate_from_start'])}; first message after "
            f"{m['start_to_first_message_s']:.1f} s); 1M at this rate: "
            f"{MILLION / m['rate'] / 60:.1f} min; first 20% with start-up "
            f"{fmt_rate(m['rate_first_20pct_with_start_up'])}; CPU {_cpu_text(m)}, all PostgreSQL "
            f"processes {cpu['postgres_server_all']:.1f} s; per email "
            f"{cpu['ms_per_email']['total']:.2f} ms CPU ({cpu['ms_per_email']['schedulers']:.2f} "
            f"schedulers, {cpu['ms_per_email']['postgres']:.2f} PostgreSQL); "
            f"{cpu['cpu_cores_busy']:.2f} cores busy; CPU per email, first 20% → last 20%: "
            f"schedulers {m['cpu_ms_per_email_first_20pct']['schedulers']:.2f} → "
            f"{m['cpu_ms_per_email_last_20pct']['schedulers']:.2f} ms, PostgreSQL "
            f"{m['cpu_ms_per_email_first_20pct']['postgres']:.2f} → "
            f"{m['cpu_ms_per_email_last_20pct']['postgres']:.2f} ms; "
            f"sent per process {m['sent_by_process']}; statuses {m['statuses']}, "
            f"{m['unique_message_ids']:,} distinct Message-IDs, sink {m['sink_messages']:,}")
        cores = os.cpu_count() or 1
        notes.append(f"{processes} scheduler(s): at {cpu['ms_per_email']['total']:.2f} ms of CPU "
                     f"per email, {cores} idle cores could drain at most "
                     f"{fmt_rate(cores * 1000 / cpu['ms_per_email']['total'])} (1M in "
                     f"{MILLION * cpu['ms_per_email']['total'] / 1000 / cores / 60:.1f} min)")
        errors = [e for e in m["errors_by_process"] if e]
        if errors or m["died"]:
            notes.append(f"{processes} scheduler(s): errors {errors} {m['died']}".strip())
    notes.append("PostgreSQL CPU = the bench database's backends (autovacuum workers included) plus "
                 "the server's background processes (WAL writer, checkpointer...); 'all PostgreSQL "
                 "processes' also holds other work on the same server. 1M is extrapolated: claims "
                 "are index scans that stop after a batch, so compare the last 20% with the first (the first "
                 "20% counted from the first 1% of the messages, after start-up).")
    return notes


def run(options: Options, *, batch_size: int = BATCH, emails: int | None = None) -> dict[str, Any]:
    """`emails` overrides the backlog's size (`options.emails` is end to end's, not this one's)."""
    from nurture.content.library import ContentHolder

    quiet_logging()
    count = emails or options.pick(200_000, 20_000)
    problem = postgres_problem(options.postgres_url) if "postgresql" in options.backends else \
        "PostgreSQL not among --backends"
    if problem is None and sink_binary() is None:
        problem = INSTALL_HINT
    if problem:
        return result(NAME, [row("drain: skipped", measured=problem[:140], baseline="—",
                                 ratio=None, target=TARGET, met=None)], {"skipped": problem})
    load_before = os.getloadavg()
    with scratch_dir() as work:
        content = make_bench_content(work)
        holder = ContentHolder(content.sequences_dir, content.templates_dir)
        runs = {n: measure(options, work, content, holder, n, count, batch_size=batch_size)
                for n in (1, 2)}
    load_after = os.getloadavg()
    notes = notes_for(runs, count)
    notes.append(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
                 f"({os.cpu_count()} cores): other work on the machine slows the drain")
    return result(NAME, rows_for(runs, count, batch_size),
                  {"runs": {str(n): m for n, m in runs.items()}, "batch_size": batch_size,
                   "tick": TICK, "emails": count}, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 deliveries, not 200,000")
    parser.add_argument("--emails", type=int, help="deliveries in the backlog")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch size (default {BATCH})")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    res = run(Options(quick=args.quick), batch_size=args.batch, emails=args.emails)
    print_rows(res)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
