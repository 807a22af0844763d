"""Benchmark 4, lateness: from due to sent, with `nurture scheduler` as a real child process.

The scheduler (default tick 5 s, `--tick`) starts on a fresh SQLite database; once it is up,
deliveries are enqueued due at staggered instants over ~30 s (15 s with --quick), 20 a second, and
the scheduler sends them into the bench SMTP server. Lateness is read back two ways:
- sent_at - due_at from the database (what the issue asks for; sent_at is the dispatch pass's
  `now`, i.e. when the tick started, not when that message left);
- arrival at the SMTP server - due_at (Message-IDs map back to delivery rows), the lateness a
  subscriber sees.
The target is p99 ≤ tick + 1 s: a tick can start just before a delivery falls due.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from bench.common import (
    BENCH_SEQUENCE,
    Options,
    SchedulerProcess,
    database,
    enroll_people,
    make_bench_content,
    people,
    percentile,
    quiet_logging,
    result,
    row,
    scheduler_env,
    scratch_dir,
)
from bench.smtp_server import ServerProcess

NAME = "lateness"
RATE = 20
"""Deliveries falling due per second."""
LEAD = 2.0
"""Seconds between enqueueing and the first due instant."""


def run(options: Options) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.content.library import ContentHolder
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    quiet_logging()
    tick = options.tick
    spread = options.pick(30, 15)
    count = spread * RATE
    details: dict[str, Any] = {"tick_seconds": tick, "spread_seconds": spread, "deliveries": count,
                               "backend": "sqlite"}
    with scratch_dir() as work, ServerProcess() as server:
        files = make_bench_content(work)
        holder = ContentHolder(files.sequences_dir, files.templates_dir)
        with database("sqlite", options, work) as url:
            env = scheduler_env(database_url=url, smtp_port=server.smtp_port, content=files,
                                tick=tick)
            scheduler = SchedulerProcess(env, work, "lateness").start()
            engine = make_engine(url)
            try:
                scheduler.wait_started()
                store = SqlStore(engine)
                start = utcnow() + timedelta(seconds=LEAD)
                due = [start + timedelta(seconds=spread * i / count) for i in range(count)]
                enroll_people(store, holder.current, BENCH_SEQUENCE, people(count, prefix="l"),
                              now=utcnow(), due=due)
                options.say(f"lateness: {count} deliveries due over {spread} s, tick {tick:g} s")
                deadline = time.monotonic() + LEAD + spread + 3 * tick + 30
                while time.monotonic() < deadline:
                    if store.counts_by_status()["sent"] >= count:
                        break
                    time.sleep(0.25)
                arrivals = server.ids()
                with engine.connect() as conn:
                    from sqlalchemy import select

                    from nurture.store.models import Delivery

                    rows = conn.execute(select(Delivery.due_at, Delivery.sent_at,
                                               Delivery.message_id, Delivery.status)).all()
            finally:
                code = scheduler.stop()
                engine.dispose()
            details["scheduler_exit_code"] = code
            details["scheduler_log_tail"] = scheduler.stderr_tail(3)
            details["scheduler_errors"] = scheduler.error_counts()
    sent = [r for r in rows if r.status == "sent" and r.sent_at is not None]
    db_late = [(r.sent_at - r.due_at).total_seconds() for r in sent]
    wire_late = [arrivals[r.message_id] - r.due_at.timestamp() for r in sent
                 if r.message_id in arrivals]
    limit = tick + 1.0
    details.update({
        "sent": len(sent),
        "arrived": len(arrivals),
        "db_p50": percentile(db_late, 50), "db_p99": percentile(db_late, 99),
        "db_max": max(db_late, default=float("nan")), "db_min": min(db_late, default=float("nan")),
        "wire_p50": percentile(wire_late, 50), "wire_p99": percentile(wire_late, 99),
        "wire_max": max(wire_late, default=float("nan")),
    })
    complete = len(sent) == count
    rows_out = []
    for label, key in (("sent_at − due_at, database", "db"), ("arrival at SMTP − due_at", "wire")):
        p50, p99 = details[f"{key}_p50"], details[f"{key}_p99"]
        rows_out.append(row(
            f"lateness ({label}), tick {tick:g} s, {count} deliveries",
            measured=f"p50 {p50:.2f} s, p99 {p99:.2f} s", baseline=f"tick {tick:g} s",
            ratio=p99 / tick, target=f"p99 ≤ {limit:g} s", met=complete and p99 <= limit,
            measured_value=p99, baseline_value=tick, unit="s",
            note="" if complete else f"only {len(sent)} of {count} sent"))
    notes = [f"{len(sent)} of {count} sent; database max {details['db_max']:.2f} s, "
             f"server max {details['wire_max']:.2f} s; the database's sent_at is the relay's "
             "reply, so it reads the same as the arrival or a little later"]
    if details["scheduler_errors"]:
        notes.append(f"scheduler errors: {details['scheduler_errors']}; last lines: "
                     f"{details['scheduler_log_tail']}")
    return result(NAME, rows_out, details, notes)
