"""Benchmark 6, scale-out: `nurture scheduler` processes on one PostgreSQL database.

Two parts. Throughput, against Postfix's `smtp-sink` (bench/smtp_sink.py, a C relay that is never
what limits a sender): one and then two schedulers send N deliveries, against raw smtplib blasts of
the same pre-built messages measured in the same run, over 1 connection and over 2 (one per
scheduler; as two threads and as two processes, and the faster of the two is the baseline). The
blasts run before and after the schedulers and their mean is the baseline. Throughput is measured
at the sink, from the first to the last arrival. Duplicates are counted in a separate, untimed run
of two schedulers into a sink that keeps every message (`-D`): that dump costs the sink a file write
per message, which roughly halves what it takes (measured in the same run, a row of its own).
Without smtp-sink these rows say "skipped" and how to install it.

Scaling, against the aiosmtpd bench server adding 20 ms before each reply (a remote relay's
latency): one and then two schedulers, throughput at the server from the first to the last arrival,
duplicates being Message-IDs the server saw more than once. A batch of 50 keeps the last batches
from leaving one process idle while the other finishes (with the default 200 and a few thousand
emails, the tail would dominate).

In both parts the schedulers start first and tick every 0.2 s; the deliveries are enrolled due
later, then made due at once, so that enrolling is never part of what is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
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
    raw_blast,
    result,
    row,
    scheduler_env,
    scratch_dir,
)
from bench.e2e import prebuild
from bench.smtp_server import ServerProcess
from bench.smtp_sink import INSTALL_HINT, SinkProcess, sink_binary

NAME = "scaleout"
DELAY_MS = 20.0
TICK = 0.2
BATCH = 50
TARGET = 1.8
SINK_BATCH = 200
"""The smtp-sink runs use the Dispatcher's default batch: N is large enough that the tail is short."""
TARGET_FRACTION = 0.8
"""Schedulers against smtp-sink: at least this share of the raw blast over as many connections."""


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


# -- against smtp-sink: throughput and duplicates --------------------------------------------------

@contextmanager
def dump_dir() -> Iterator[Path]:
    """A folder for the sink's dump that it can write after dropping to `nobody`: the scratch
    folder is private (0700), so this one sits beside it, traversable, and goes afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="nurture-bench-sink-"))
    try:
        os.chmod(parent, 0o711)
        yield parent / "dump"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def arrivals(sink: SinkProcess, base: int, count: int, *, first_timeout: float = 60,
             stall: float = 30) -> tuple[int, float, float]:
    """Waits for `count` messages past `base`: (how many came, perf_counter of the first arrival,
    of the last). Gives up after `first_timeout` without a first one or `stall` s without one more."""
    got = sink.wait_for(base + 1, first_timeout) - base
    first = last = time.perf_counter()
    while 0 < got < count:
        now = sink.wait_for(base + count, stall) - base
        if now == got:
            break
        got, last = now, time.perf_counter()
    return got, first, last


def measure_sink(options: Options, work: Any, holder: Any, content: Any, sink: SinkProcess,
                 processes: int, count: int, label: str) -> dict[str, Any]:
    """`processes` schedulers send `count` deliveries into `sink`; the rate is taken at the sink."""
    from sqlalchemy import update

    from nurture.clock import utcnow
    from nurture.store.database import make_engine
    from nurture.store.models import Delivery
    from nurture.store.sql.store import SqlStore

    with database("postgresql", options, work) as url:
        env = scheduler_env(database_url=url, smtp_port=sink.port, content=content,
                            tick=TICK, batch_size=SINK_BATCH)
        schedulers = [SchedulerProcess(env, work, f"scaleout-{label}-{processes}-{i}").start()
                      for i in range(processes)]
        engine = make_engine(url)
        try:
            store = SqlStore(engine)
            now = utcnow()
            # Enrolled due tomorrow, then made due at once: enrolling is not what is measured.
            enroll_people(store, holder.current, BENCH_SEQUENCE,
                          people(count, prefix=f"{label}{processes}-"),
                          now=now, due=[now + timedelta(days=1)] * count)
            for scheduler in schedulers:
                scheduler.wait_started()
            base = sink.messages
            with engine.begin() as conn:
                conn.execute(update(Delivery).values(due_at=utcnow()))
            got, first, last = arrivals(sink, base, count)
            deadline = time.monotonic() + 30
            while store.counts_by_status().get("sent", 0) < count and time.monotonic() < deadline:
                time.sleep(0.2)
            statuses = store.counts_by_status()
        finally:
            codes = [scheduler.stop() for scheduler in schedulers]
            engine.dispose()
    span = last - first
    rate = (got - 1) / span if span > 0 else float("nan")
    options.say(f"scaleout ({label}): {processes} scheduler(s): {rate:,.0f} emails/s, "
                f"{got:,} of {count:,} arrived")
    logs = [log_summary(s) for s in schedulers]
    return {"processes": processes, "emails": count, "rate": rate, "span_seconds": span,
            "received": got, "statuses": statuses, "exit_codes": codes,
            "sent_by_process": [sent for sent, _ in logs],
            "errors_by_process": [errors for _, errors in logs],
            "log_tail": schedulers[0].stderr_tail(2) if got < count else ""}


def blast_round(sink: SinkProcess, messages: list[tuple[str, bytes]]) -> dict[str, float]:
    """Raw smtplib blasts of `messages` into `sink`: emails/s over 1 connection, and over 2 as
    threads and as processes."""
    n = len(messages)
    return {"1": n / raw_blast(sink.port, messages, connections=1),
            "2 threads": n / raw_blast(sink.port, messages, connections=2, mode="thread"),
            "2 processes": n / raw_blast(sink.port, messages, connections=2, mode="process")}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sink_part(options: Options, work: Any, content: Any, holder: Any) -> tuple[
        list[dict[str, Any]], dict[str, Any], list[str]]:
    """The smtp-sink rows: 1 and 2 schedulers against raw blasts, the dump's cost, duplicates."""
    from nurture.clock import utcnow

    count = options.pick(20_000, 5_000)
    messages = prebuild(holder.current, people(count, prefix="raw-"), utcnow())
    mean_bytes = sum(len(m) for _, m in messages) / count
    options.say(f"scaleout: pre-built {count:,} messages ({mean_bytes:,.0f} bytes mean)")
    rounds: list[dict[str, float]] = []
    with SinkProcess() as sink, dump_dir() as dumps, SinkProcess(dump_dir=dumps) as dumping:
        rounds.append(blast_round(sink, messages))
        options.say(f"scaleout: raw blasts into smtp-sink: {rounds[-1]}")
        one = measure_sink(options, work, holder, content, sink, 1, count, "sink")
        two = measure_sink(options, work, holder, content, sink, 2, count, "sink")
        rounds.append(blast_round(sink, messages))
        options.say(f"scaleout: raw blasts into smtp-sink: {rounds[-1]}")
        # What the dump costs: the faster 2-connection blast into the dumping sink, right after
        # the same blast into the plain one.
        two_mode = max(("2 threads", "2 processes"), key=lambda k: mean([r[k] for r in rounds]))
        mode = "thread" if two_mode == "2 threads" else "process"
        dump_rate = count / raw_blast(dumping.port, messages, connections=2, mode=mode)
        base = dumping.message_ids()  # the blast above
        dup = measure_sink(options, work, holder, content, dumping, 2, count, "dump")
        ids = dumping.message_ids() - base
    raw = {key: mean([r[key] for r in rounds]) for key in rounds[0]}
    raw_two = raw[two_mode]
    duplicates = sum(c - 1 for c in ids.values() if c > 1)
    dump_ratio = dump_rate / rounds[-1][two_mode]
    target = f"≥ {TARGET_FRACTION:g}×"
    complete = {name: m["received"] == count and m["statuses"].get("sent") == count
                for name, m in (("one", one), ("two", two), ("dup", dup))}
    rows = [
        row(f"scale-out: 2 schedulers vs raw smtplib, 2 connections ({two_mode}), PostgreSQL, "
            f"smtp-sink, {count:,} emails",
            measured=fmt_rate(two["rate"]), baseline=f"{fmt_rate(raw_two)} raw",
            ratio=two["rate"] / raw_two, target=target,
            met=two["rate"] / raw_two >= TARGET_FRACTION and complete["two"],
            measured_value=two["rate"], baseline_value=raw_two, unit="emails/s",
            note="" if complete["two"] else "not every delivery arrived"),
        row(f"scale-out: 1 scheduler vs raw smtplib, 1 connection, PostgreSQL, smtp-sink, "
            f"{count:,} emails",
            measured=fmt_rate(one["rate"]), baseline=f"{fmt_rate(raw['1'])} raw",
            ratio=one["rate"] / raw["1"], target=target,
            met=one["rate"] / raw["1"] >= TARGET_FRACTION and complete["one"],
            measured_value=one["rate"], baseline_value=raw["1"], unit="emails/s",
            note="" if complete["one"] else "not every delivery arrived"),
        row(f"scale-out: duplicates, 2 schedulers, PostgreSQL, smtp-sink with -D dump "
            f"(separate untimed run), {count:,} emails",
            measured=f"{duplicates} dup, {len(ids):,} unique", baseline="—", ratio=None,
            target="0 duplicates, every email once",
            met=duplicates == 0 and len(ids) == count and complete["dup"],
            measured_value=float(duplicates), unit="duplicates",
            note="" if complete["dup"] else "not every delivery arrived"),
        row(f"scale-out: smtp-sink -D dump cost, raw smtplib 2 connections ({two_mode}), "
            f"with vs without",
            measured=fmt_rate(dump_rate), baseline=fmt_rate(rounds[-1][two_mode]),
            ratio=dump_ratio, target="tracked (< 0.95: duplicates need a run of their own)",
            met=None, measured_value=dump_rate, baseline_value=rounds[-1][two_mode],
            unit="emails/s"),
    ]
    notes = [
        f"smtp-sink: raw blasts (mean of a round before and one after the schedulers): "
        f"1 connection {fmt_rate(raw['1'])}, 2 threads {fmt_rate(raw['2 threads'])}, "
        f"2 processes {fmt_rate(raw['2 processes'])}: the 2-connection baseline is {two_mode}, "
        f"the faster; 2 connections give {raw_two / raw['1']:.2f}× one here",
        f"smtp-sink: 2 schedulers give {two['rate'] / one['rate']:.2f}× one "
        f"({fmt_rate(two['rate'])} vs {fmt_rate(one['rate'])}); sent per process: one "
        f"{one['sent_by_process']}, two {two['sent_by_process']}; batch {SINK_BATCH}, "
        f"tick {TICK:g} s",
        f"smtp-sink: writing every message to a dump (-D) takes the raw 2-connection blast to "
        f"{dump_ratio:.2f} of the plain sink's (the same blast just before), so duplicates are "
        f"counted in a separate run into a dumping sink (2 schedulers, {fmt_rate(dup['rate'])} "
        "there), not in the timed one",
    ]
    errors = [e for m in (one, two, dup) for e in m["errors_by_process"] if e]
    if errors:
        notes.append(f"smtp-sink: scheduler errors: {errors}; last lines: "
                     f"{one['log_tail'] or two['log_tail'] or dup['log_tail']}")
    details = {"emails": count, "message_bytes_mean": mean_bytes, "batch": SINK_BATCH,
               "raw_rounds": rounds, "raw_mean": raw, "two_connection_mode": two_mode,
               "dump_raw_rate": dump_rate, "dump_ratio": dump_ratio, "one": one, "two": two,
               "duplicates_run": {**dup, "duplicates": duplicates, "unique_ids": len(ids)}}
    return rows, details, notes


def run(options: Options) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    problem = postgres_problem(options.postgres_url) if "postgresql" in options.backends else \
        "PostgreSQL not among --backends"
    if problem:
        return result(NAME, [row("scale-out: skipped", measured=problem[:100], baseline="—",
                                 ratio=None, target=f"≥ {TARGET:g}×, 0 duplicates", met=None)],
                      {"skipped": problem})
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    details: dict[str, Any] = {}
    count = options.pick(3_000, 600)
    with scratch_dir() as work:
        content = make_bench_content(work)
        holder = ContentHolder(content.sequences_dir, content.templates_dir)
        if sink_binary() is None:
            rows.append(row("scale-out: schedulers vs raw smtplib, smtp-sink: skipped",
                            measured="smtp-sink not installed", baseline="—", ratio=None,
                            target=f"≥ {TARGET_FRACTION:g}× raw, 0 duplicates", met=None,
                            note=INSTALL_HINT))
            notes.append(f"smtp-sink rows skipped: {INSTALL_HINT}")
            details["smtp_sink"] = {"skipped": INSTALL_HINT}
        else:
            sink_rows, details["smtp_sink"], sink_notes = sink_part(options, work, content, holder)
            rows += sink_rows
            notes += sink_notes
        with ServerProcess(delay_ms=DELAY_MS) as server:
            one = measure(options, work, content, holder, server, 1, count)
            two = measure(options, work, content, holder, server, 2, count)
    ratio = two["rate"] / one["rate"]
    duplicates = one["server"]["duplicates"] + two["server"]["duplicates"]
    complete = all(m["server"]["unique_ids"] == count and m["statuses"]["sent"] == count
                   for m in (one, two))
    rows.append(row(f"scale-out (aiosmtpd +{DELAY_MS:g} ms): 2 vs 1 schedulers, PostgreSQL, "
                    f"{count:,} emails",
                    measured=f"{fmt_rate(two['rate'])}, {two['server']['duplicates']} dup",
                    baseline=f"{fmt_rate(one['rate'])}, {one['server']['duplicates']} dup",
                    ratio=ratio, target=f"≥ {TARGET:g}×, 0 duplicates",
                    met=ratio >= TARGET and duplicates == 0 and complete,
                    measured_value=two["rate"], baseline_value=one["rate"], unit="emails/s",
                    note="" if complete else "not every delivery arrived exactly once"))
    errors = [e for m in (one, two) for e in m["errors_by_process"] if e]
    notes.append(f"aiosmtpd +{DELAY_MS:g} ms: sent per process: one {one['sent_by_process']}, "
                 f"two {two['sent_by_process']}; batch {BATCH}, tick {TICK:g} s; a single "
                 f"connection's ceiling is {1000 / DELAY_MS:.0f} emails/s at {DELAY_MS:g} ms per reply")
    if errors:
        notes.append(f"aiosmtpd +{DELAY_MS:g} ms: scheduler errors: {errors}; last lines: "
                     f"{one['log_tail'] or two['log_tail']}")
    details.update({"one": one, "two": two, "batch": BATCH, "tick": TICK, "delay_ms": DELAY_MS})
    return result(NAME, rows, details, notes)
