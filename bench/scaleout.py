"""Benchmark 6, scale-out: one and then two `nurture scheduler` processes on one PostgreSQL database,
sending into an SMTP server that adds 20 ms before each reply (a remote relay's latency).

The schedulers start first and tick every 0.2 s; then N deliveries are enqueued due a second later.
Throughput is measured at the server, from the first to the last arrival; duplicates are Message-IDs
the server saw more than once. A batch of 50 keeps the last batches from leaving one process idle
while the other finishes (with the default 200 and a few thousand emails, the tail would dominate).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from bench.common import (
    BENCH_SEQUENCE,
    Options,
    SchedulerProcess,
    database,
    enroll_people,
    fmt_rate,
    make_bench_content,
    people,
    postgres_problem,
    quiet_logging,
    result,
    row,
    scheduler_env,
    scratch_dir,
)
from bench.smtp_server import ServerProcess

NAME = "scaleout"
DELAY_MS = 20.0
TICK = 0.2
BATCH = 50
TARGET = 1.8


def log_summary(scheduler: SchedulerProcess) -> tuple[int, dict[str, int]]:
    """(emails the process reports sent, error log lines by error type) from its JSON log."""
    total = 0
    errors: dict[str, int] = {}
    for line in scheduler.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "dispatch batch":
            total += int(entry.get("sent", 0))
        if entry.get("level") == "error":
            kind = str(entry.get("error_type") or entry.get("event"))
            errors[kind] = errors.get(kind, 0) + 1
    return total, errors


def measure(options: Options, work: Any, content: Any, holder: Any, server: ServerProcess,
            processes: int, count: int) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    server.reset()
    with database("postgresql", options, work) as url:
        env = scheduler_env(database_url=url, smtp_port=server.smtp_port, content=content,
                            tick=TICK, batch_size=BATCH)
        schedulers = [SchedulerProcess(env, work, f"scaleout-{processes}-{i}").start()
                      for i in range(processes)]
        engine = make_engine(url)
        try:
            for scheduler in schedulers:
                scheduler.wait_started()
            store = SqlStore(engine)
            now = utcnow()
            enroll_people(store, holder.current, BENCH_SEQUENCE, people(count, prefix=f"s{processes}-"),
                          now=now, due=[now + timedelta(seconds=1)] * count)
            expected_seconds = count * (DELAY_MS / 1000 + 0.01) / processes
            stats = server.wait_for(count, expected_seconds * 3 + 60, poll=0.2, stall=30)
            deadline = time.monotonic() + 30
            while store.counts_by_status()["sent"] < count and time.monotonic() < deadline:
                time.sleep(0.2)
            statuses = store.counts_by_status()
        finally:
            codes = [scheduler.stop() for scheduler in schedulers]
            engine.dispose()
    stats = server.stats()
    span = (stats["last"] or 0) - (stats["first"] or 0)
    rate = (stats["messages"] - 1) / span if span > 0 else float("nan")
    options.say(f"scaleout: {processes} scheduler(s): {rate:,.1f} emails/s, "
                f"{stats['duplicates']} duplicate(s)")
    logs = [log_summary(s) for s in schedulers]
    return {"processes": processes, "emails": count, "rate": rate, "span_seconds": span,
            "server": stats, "statuses": statuses, "exit_codes": codes,
            "sent_by_process": [sent for sent, _ in logs],
            "errors_by_process": [errors for _, errors in logs],
            "log_tail": schedulers[0].stderr_tail(2) if stats["messages"] < count else ""}


def run(options: Options) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    problem = postgres_problem(options.postgres_url) if "postgresql" in options.backends else \
        "PostgreSQL not among --backends"
    if problem:
        return result(NAME, [row("scale-out: skipped", measured=problem[:100], baseline="—",
                                 ratio=None, target=f"≥ {TARGET:g}×, 0 duplicates", met=None)],
                      {"skipped": problem})
    count = options.pick(3_000, 600)
    with scratch_dir() as work, ServerProcess(delay_ms=DELAY_MS) as server:
        content = make_bench_content(work)
        holder = ContentHolder(content.sequences_dir, content.templates_dir)
        one = measure(options, work, content, holder, server, 1, count)
        two = measure(options, work, content, holder, server, 2, count)
    ratio = two["rate"] / one["rate"]
    duplicates = one["server"]["duplicates"] + two["server"]["duplicates"]
    complete = all(m["server"]["unique_ids"] == count and m["statuses"]["sent"] == count
                   for m in (one, two))
    rows = [row(f"scale-out: 2 vs 1 schedulers, PostgreSQL, relay +{DELAY_MS:g} ms, {count:,} emails",
                measured=f"{fmt_rate(two['rate'])}, {two['server']['duplicates']} dup",
                baseline=f"{fmt_rate(one['rate'])}, {one['server']['duplicates']} dup",
                ratio=ratio, target=f"≥ {TARGET:g}×, 0 duplicates",
                met=ratio >= TARGET and duplicates == 0 and complete,
                measured_value=two["rate"], baseline_value=one["rate"], unit="emails/s",
                note="" if complete else "not every delivery arrived exactly once")]
    errors = [e for m in (one, two) for e in m["errors_by_process"] if e]
    notes = [f"sent per process: one {one['sent_by_process']}, two {two['sent_by_process']}; "
             f"batch {BATCH}, tick {TICK:g} s; a single connection's ceiling is "
             f"{1000 / DELAY_MS:.0f} emails/s at {DELAY_MS:g} ms per reply"]
    if errors:
        notes.append(f"scheduler errors: {errors}; last lines: {one['log_tail'] or two['log_tail']}")
    return result(NAME, rows, {"one": one, "two": two, "batch": BATCH, "tick": TICK,
                               "delay_ms": DELAY_MS}, notes)
