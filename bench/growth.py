"""Benchmark 3, growth: claim plus record cost per email with a small and a large history.

History (sent deliveries of completed enrollments, one subscriber each) is generated with bulk SQL:
INSERT ... SELECT generate_series on PostgreSQL, a recursive CTE on SQLite. Then M fresh deliveries
of a two-step sequence are claimed and recorded (sent, next step queued), batch by batch, exactly
as the Dispatcher would but without rendering or SMTP. The cost per email is the median over batches
of (claim + record time) / batch size. PostgreSQL gets VACUUM ANALYZE after the load, as autovacuum
would do; SQLite gets no ANALYZE, as a deployment never runs one.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

from bench.common import (
    BENCH_TWO_STEPS,
    MESSAGE_ID_DOMAIN,
    Options,
    backends_available,
    database,
    enroll_people,
    fmt_seconds,
    make_bench_content,
    median,
    people,
    quiet_logging,
    result,
    row,
    scratch_dir,
)

NAME = "growth"
TARGETS = {"postgresql": 1.5, "sqlite": 2.0}
BATCH = 200

_PG_HISTORY = [
    """
    INSERT INTO subscriber (id, email, first_name, locale, time_zone, hesitations, discreet, status,
                            created_at, confirmed_at, updated_at)
    SELECT ('1' || lpad(to_hex(i), 31, '0'))::uuid, 'h' || i || '@history.test', 'Hist', 'en', 'UTC',
           '["stigma"]'::json, false, 'active', ts, ts, ts
    FROM generate_series(1, %(n)s) AS i,
         LATERAL (SELECT timestamp '2025-01-01' + i * interval '1 second' AS ts) AS t
    """,
    """
    INSERT INTO enrollment (id, subscriber_id, sequence_key, status, last_step_key, last_sent_at,
                            content_version, enrolled_at, ended_at, end_reason)
    SELECT ('2' || lpad(to_hex(i), 31, '0'))::uuid, ('1' || lpad(to_hex(i), 31, '0'))::uuid,
           'bench-two', 'completed', 'one', ts, 'history', ts, ts, 'finished'
    FROM generate_series(1, %(n)s) AS i,
         LATERAL (SELECT timestamp '2025-01-01' + i * interval '1 second' AS ts) AS t
    """,
    """
    INSERT INTO delivery (id, kind, subscriber_id, enrollment_id, step_key, status, due_at, attempts,
                          message_id, smtp_code, content_version, created_at, sent_at)
    SELECT ('3' || lpad(to_hex(i), 31, '0'))::uuid, 'step', ('1' || lpad(to_hex(i), 31, '0'))::uuid,
           ('2' || lpad(to_hex(i), 31, '0'))::uuid, 'one', 'sent', ts, 1,
           '<3' || lpad(to_hex(i), 31, '0') || '@history.test>', 250, 'history', ts, ts
    FROM generate_series(1, %(n)s) AS i,
         LATERAL (SELECT timestamp '2025-01-01' + i * interval '1 second' AS ts) AS t
    """,
]

_SQLITE_SERIES = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
_SQLITE_TS = "(strftime('%Y-%m-%d %H:%M:%S', 1735689600 + i, 'unixepoch') || '.000000')"
_SQLITE_HISTORY = [
    _SQLITE_SERIES + f"""
    INSERT INTO subscriber (id, email, first_name, locale, time_zone, hesitations, discreet, status,
                            created_at, confirmed_at, updated_at)
    SELECT printf('1%031x', i), 'h' || i || '@history.test', 'Hist', 'en', 'UTC', '["stigma"]', 0,
           'active', {_SQLITE_TS}, {_SQLITE_TS}, {_SQLITE_TS}
    FROM s
    """,
    _SQLITE_SERIES + f"""
    INSERT INTO enrollment (id, subscriber_id, sequence_key, status, last_step_key, last_sent_at,
                            content_version, enrolled_at, ended_at, end_reason)
    SELECT printf('2%031x', i), printf('1%031x', i), 'bench-two', 'completed', 'one', {_SQLITE_TS},
           'history', {_SQLITE_TS}, {_SQLITE_TS}, 'finished'
    FROM s
    """,
    _SQLITE_SERIES + f"""
    INSERT INTO delivery (id, kind, subscriber_id, enrollment_id, step_key, status, due_at, attempts,
                          message_id, smtp_code, content_version, created_at, sent_at)
    SELECT printf('3%031x', i), 'step', printf('1%031x', i), printf('2%031x', i), 'one', 'sent',
           {_SQLITE_TS}, 1, '<' || printf('3%031x', i) || '@history.test>', 250, 'history',
           {_SQLITE_TS}, {_SQLITE_TS}
    FROM s
    """,
]


def generate_history(backend: str, url: str, n: int) -> float:
    """Seconds to insert n subscribers, n completed enrollments and n sent deliveries."""
    started = time.perf_counter()
    if backend == "postgresql":
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            with conn.transaction():
                for statement in _PG_HISTORY:
                    conn.execute(statement, {"n": n})
            conn.execute("VACUUM ANALYZE")
    else:
        path = url.split("///", 1)[1]
        lite = sqlite3.connect(path, isolation_level=None)
        try:
            lite.execute("PRAGMA synchronous=OFF")
            lite.execute("BEGIN IMMEDIATE")
            for statement in _SQLITE_HISTORY:
                lite.execute(statement, {"n": n})
            lite.execute("COMMIT")
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            lite.close()
    return time.perf_counter() - started


def outcome_for(claim: Any, sequence: Any, version: str, now: Any) -> Any:
    """What the Dispatcher records after a 250: sent, and the planner's next step queued."""
    from nurture.domain.model import Profile
    from nurture.engine.decisions import message_id_for
    from nurture.engine.planner import plan_next
    from nurture.engine.ports import DeliveryStatus, EnrollmentStatus, Outcome

    s = claim.subscriber
    profile = Profile(time_zone=s.time_zone, hesitations=s.hesitations, discreet=s.discreet,
                      locale=s.locale)
    done = claim.enrollment.done_step_keys | {claim.step_key}
    plan = plan_next(sequence, profile, done_step_keys=done, anchor=now)
    finished = plan.step is None
    return Outcome(claim.id, DeliveryStatus.SENT, now, smtp_code=250,
                   message_id=message_id_for(claim.id, MESSAGE_ID_DOMAIN), content_version=version,
                   count_attempt=True, next_delivery=plan.as_next_delivery(),
                   end_enrollment=EnrollmentStatus.COMPLETED if finished else None,
                   end_reason="finished" if finished else None)


class Prepared:
    """One database with its history and `fresh` queued deliveries, ready to be claimed."""

    def __init__(self, backend: str, url: str, history: int, load_seconds: float) -> None:
        from nurture.store.database import make_engine
        from nurture.store.sql.store import SqlStore

        self.backend, self.history, self.load_seconds = backend, history, load_seconds
        self.engine = make_engine(url)
        self.store = SqlStore(self.engine)
        self.per_email: list[float] = []
        self.claim_total = self.record_total = 0.0
        self.claimed = 0
        self.done = False

    def batch(self, sequence: Any, version: str, now: Any) -> None:
        """Claim one batch, build the outcomes (untimed), record them."""
        t0 = time.perf_counter()
        claims = self.store.claim_due(now=now, owner="growth", limit=BATCH,
                                      lease=timedelta(minutes=30))
        t1 = time.perf_counter()
        if not claims:
            self.done = True
            return
        outcomes = [outcome_for(c, sequence, version, now) for c in claims]
        t2 = time.perf_counter()
        self.store.record(outcomes, owner="growth")
        t3 = time.perf_counter()
        self.claimed += len(claims)
        self.claim_total += t1 - t0
        self.record_total += t3 - t2
        self.per_email.append(((t1 - t0) + (t3 - t2)) / len(claims))

    def summary(self, fresh: int) -> dict[str, Any]:
        claimed = max(self.claimed, 1)
        return {
            "history_rows": self.history,
            "history_load_seconds": self.load_seconds,
            "fresh": fresh,
            "claimed": self.claimed,
            "batches": len(self.per_email),
            "median_s_per_email": median(self.per_email),
            "mean_s_per_email": (self.claim_total + self.record_total) / claimed,
            "claim_s_per_email": self.claim_total / claimed,
            "record_s_per_email": self.record_total / claimed,
            "statuses": self.store.counts_by_status(),
        }


def compare(backend: str, options: Options, work: Any, holder: Any, small: int, large: int,
            fresh: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both databases are prepared first, then measured batch by batch in alternation, so that
    whatever else the machine does in the meantime weighs on both alike."""
    from nurture.clock import utcnow

    content = holder.current
    sequence = content.sequences[BENCH_TWO_STEPS]
    with ExitStack() as stack:
        prepared = []
        for history in (small, large):
            url = stack.enter_context(database(backend, options, work))
            seconds = generate_history(backend, url, history)
            options.say(f"growth {backend}: {history:,} history rows per table in {seconds:.1f} s")
            item = Prepared(backend, url, history, seconds)
            stack.callback(item.engine.dispose)
            prepared.append(item)
        now = utcnow()
        for item in prepared:
            enroll_people(item.store, content, BENCH_TWO_STEPS, people(fresh, prefix="g"),
                          now=now - timedelta(minutes=1))
        while not all(item.done for item in prepared):
            for item in prepared:
                if not item.done:
                    item.batch(sequence, content.version, now)
        little, big = (item.summary(fresh) for item in prepared)
    return little, big


def run(options: Options) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    small = 10_000
    large = options.pick(1_000_000, 200_000)
    fresh = options.pick(6_000, 2_000)
    backends, skipped = backends_available(options)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    details: dict[str, Any] = {"small_history": small, "large_history": large, "fresh": fresh,
                               "batch": BATCH, "skipped_backends": skipped}
    with scratch_dir() as work:
        files = make_bench_content(work)
        holder = ContentHolder(files.sequences_dir, files.templates_dir)
        for backend in backends:
            little, big = compare(backend, options, work, holder, small, large, fresh)
            details[backend] = {"small": little, "large": big}
            ratio = big["median_s_per_email"] / little["median_s_per_email"]
            target = TARGETS[backend]
            complete = big["claimed"] == fresh and little["claimed"] == fresh
            rows.append(row(
                f"growth {backend}: claim+record per email, {large:,} vs {small:,} history",
                measured=f"{fmt_seconds(big['median_s_per_email'])}/email",
                baseline=f"{fmt_seconds(little['median_s_per_email'])}/email",
                ratio=ratio, target=f"≤ {target:g}", met=ratio <= target and complete,
                measured_value=big["median_s_per_email"],
                baseline_value=little["median_s_per_email"], unit="s/email"))
            notes.append(
                f"{backend}: claim {fmt_seconds(little['claim_s_per_email'])} → "
                f"{fmt_seconds(big['claim_s_per_email'])}, record "
                f"{fmt_seconds(little['record_s_per_email'])} → "
                f"{fmt_seconds(big['record_s_per_email'])} per email (means); loading "
                f"{large:,} rows per table took {big['history_load_seconds']:.0f} s")
    for backend, why in skipped.items():
        rows.append(row(f"growth {backend}: skipped", measured=why[:100], baseline="—", ratio=None,
                        target=f"≤ {TARGETS[backend]:g}", met=None))
    return result(NAME, rows, details, notes)
