"""Chaos soak: everything that can fail, failing at once, on PostgreSQL with real processes.

Not run by CI or by bench/run. `.venv/bin/python -m bench.chaos [--minutes M] [--seed S]
[--people N] [--quick] [--json-out FILE]`.

Its own PostgreSQL cluster (initdb in a temp dir, run as `postgres`, a free port, trust auth; stopped
and deleted at the end), the shipped sequences and templates copied (their send windows, 09:00-20:00
local, kept), N people in five time zones enrolled at staggered times over the past three days. A
virtual clock starts at the real now and moves forward in steps; at each instant three real
`nurture dispatch --now <instant> --json` processes run at once, round after round, until a round
claims nothing. Two real
`nurture scheduler` processes run on the real clock all along, and `nurture web` takes unsubscribes,
pauses and consult_booked events for random people. Faults (chaos_faults.KINDS) hit at seeded random
moments; after a crash a takeover pass runs past the lease end (the time is passed, never slept).
At the end chaos_checks checks every promise from the database and from what the relay received,
prints a table and exits 1 when one was broken.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.chaos_checks import check, print_table
from bench.chaos_faults import CRASHES, Actor, Injector
from bench.chaos_infra import Child, Cluster, Relay, crisis_headings, free_port, make_content, wait_http
from bench.common import enroll_people, link_maker, quiet_logging, scheduler_env

LEASE_SECONDS = 20
PASSES = 3
SCHEDULERS = 2
API_KEY = "chaos-api-key-" + "k" * 16
SEQUENCES = ("partner-hesitant", "starting-solo", "preparing-together", "sample")
TIME_ZONES = ("UTC", "Asia/Kolkata", "America/New_York", "Australia/Sydney", "America/Los_Angeles")
"""Where people live: each send window opens at a different instant of the virtual clock."""
SPAN = timedelta(days=38)
"""About how far the virtual clock goes: the longest sequence, a follow-up, the stagger, a pause."""


def say(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def make_people(count: int) -> list[Any]:
    from nurture.domain.people import Person

    reasons = [frozenset(), frozenset({"stigma"}), frozenset({"fear_of_blame"}),
               frozenset({"stigma", "fear_of_blame"}), frozenset({"unfamiliar", "not_sure"})]
    out = []
    for index in range(count):
        out.append(Person(email=f"chaos{index}@example.org",
                          first_name=("Asha", None, "Zoë", "Ravi")[index % 4],
                          time_zone=TIME_ZONES[(index // 2) % len(TIME_ZONES)],
                          hesitations=reasons[index % len(reasons)], discreet=index % 7 == 0,
                          locale=("en", "hi-IN")[index % 2]))
    return out


class Soak:
    def __init__(self, args: argparse.Namespace, seed: int, work: Path) -> None:
        self.args = args
        self.seed = seed
        self.work = work
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.cluster = Cluster()
        self.database = "nurture_chaos"
        self.content_dir = work / "content"
        self.children: list[Child] = []
        self._passes: list[Child] = []
        self._schedulers: list[Child] = []
        self.pass_log: list[dict[str, Any]] = []
        self.virtual = datetime.now(UTC)
        self.stopping = False
        self.say = say
        self.relay_server: Relay | None = None

    # -- what the faults reach ----------------------------------------------------------------

    @property
    def relay(self) -> Any:
        assert self.relay_server is not None
        return self.relay_server.state

    def passes(self) -> list[Child]:
        with self.lock:
            return list(self._passes)

    def schedulers(self) -> list[Child]:
        with self.lock:
            return list(self._schedulers)

    def restart_scheduler(self, old: Child, after: float) -> None:
        def restart() -> None:
            try:
                old.process.wait(timeout=60)
            except Exception:
                old.end()
            time.sleep(after)
            with self.lock:
                if self.stopping:
                    return
                if old in self._schedulers:
                    self._schedulers.remove(old)
                self._schedulers.append(self.spawn(f"scheduler-{len(self.children)}", "scheduler"))

        threading.Thread(target=restart, daemon=True).start()

    def spawn(self, name: str, *args: str) -> Child:
        child = Child(self.env, self.work, name, *args)
        self.children.append(child)
        return child

    # -- the run ------------------------------------------------------------------------------

    def setup(self, people: int) -> None:
        from nurture.content.library import load_content
        from nurture.store.database import make_engine, upgrade
        from nurture.store.sql.store import SqlStore

        self.cluster.start()
        self.url = self.cluster.create_database(self.database)
        say(f"PostgreSQL {self.cluster.bin.parent.name} on port {self.cluster.port} ({self.cluster.dir})")
        content = make_content(self.content_dir)
        self.relay_server = Relay(crisis_headings(), self.work / "relay.dump").start()
        self.env = scheduler_env(database_url=self.url, smtp_port=self.relay_server.port,
                                 content=content, tick=1.0, batch_size=100)
        upgrade(self.url)
        self.env.update({"NURTURE_LEASE_SECONDS": str(LEASE_SECONDS),
                         "NURTURE_SMTP_TIMEOUT_SECONDS": "20", "NURTURE_API_KEY": API_KEY,
                         "NURTURE_LOG_LEVEL": "WARNING"})
        self.engine = make_engine(self.url)
        store = SqlStore(self.engine)
        loaded = load_content(content.sequences_dir, content.templates_dir)
        persons = make_people(people)
        groups = 12
        now = datetime.now(UTC)
        for group in range(groups):
            at = now - timedelta(days=3) + group * timedelta(hours=6)
            mine = persons[group::groups]
            for index, sequence in enumerate(SEQUENCES):
                enroll_people(store, loaded, sequence, mine[index::len(SEQUENCES)], now=at)
        say(f"{people:,} people enrolled in {', '.join(SEQUENCES)} over the past 3 days")

    def start_services(self) -> None:
        self.web_port = free_port()
        web = self.spawn("web", "web", "--host", "127.0.0.1", "--port", str(self.web_port))
        wait_http(f"http://127.0.0.1:{self.web_port}/healthz", child=web)
        with self.lock:
            for _ in range(SCHEDULERS):
                self._schedulers.append(self.spawn(f"scheduler-{len(self.children)}", "scheduler"))

    def run_round(self, at: datetime, count: int) -> tuple[int, bool]:
        """`count` dispatch passes as of `at`, at once: (sent by all, whether one did not exit 0).

        Never as of a moment before the real now: the schedulers run on the real clock, and a pass
        behind them would grant leases they see as run out, and take its rows while it sends."""
        at = max(at, datetime.now(UTC))
        children = [self.spawn(f"pass-{len(self.children)}", "dispatch", "--now", at.isoformat(),
                               "--json") for _ in range(count)]
        with self.lock:
            self._passes.extend(children)
        sent, broken = 0, False
        for child in children:
            code = child.process.wait()
            with self.lock:
                self._passes.remove(child)
            lines = child.output().strip().splitlines()
            report = json.loads(lines[-1]) if code == 0 and lines else {}
            sent += int(report.get("sent", 0))
            broken = broken or code != 0
            self.pass_log.append({"name": child.name, "virtual": at.isoformat(), "code": code,
                                  "started": child.started, **report})
        return sent, broken

    def drain_instant(self, at: datetime, count: int = PASSES) -> None:
        """Rounds of passes until nothing is due at `at` (or a clean round sends nothing: what is
        left is held back, by a retry's backoff, a limit or pacing) twice running."""
        if self.open_rows(at)["due"] == 0:
            return
        idle = 0
        for _ in range(10):
            sent, broken = self.run_round(at, count)
            idle = idle + 1 if sent == 0 and not broken else 0
            if self.open_rows(at)["due"] == 0 or idle == 2:
                return
            if broken:
                time.sleep(1)  # a restarting database or broken content: try again shortly

    def next_due(self) -> datetime:
        """The earliest due_at of an unfinished delivery: empty instants are skipped."""
        from sqlalchemy import func, select

        from nurture.store.models import Delivery

        with self.engine.connect() as conn:
            due = conn.scalar(select(func.min(Delivery.due_at)).where(
                Delivery.status.in_(("queued", "deferred"))))
        return due if isinstance(due, datetime) else self.virtual

    def open_rows(self, at: datetime | None = None) -> dict[str, int]:
        """Unfinished deliveries by status, and how many of them are due at `at`."""
        from sqlalchemy import and_, func, or_, select

        from nurture.store.models import Delivery

        when = at or self.virtual
        due = or_(and_(Delivery.status.in_(("queued", "deferred")), Delivery.due_at <= when),
                  and_(Delivery.status == "sending", Delivery.lease_expires_at <= when))
        for _ in range(30):
            try:
                with self.engine.connect() as conn:
                    counts = {str(status): int(n) for status, n in conn.execute(
                        select(Delivery.status, func.count()).where(
                            Delivery.status.in_(("queued", "sending", "deferred", "failed")))
                        .group_by(Delivery.status))}
                    counts["due"] = int(conn.scalar(
                        select(func.count()).select_from(Delivery).where(due)) or 0)
                    return counts
            except Exception:
                self.engine.dispose()
                time.sleep(1)
        raise RuntimeError("the database stayed unreachable")

    def clock_loop(self, injector: Injector, seconds: float) -> None:
        step = timedelta(hours=self.args.step_hours)
        expected = math.ceil(SPAN / step)
        pace = seconds * 0.95 / expected
        begun = time.time()
        crashes_seen = 0
        index = 0
        while True:
            time.sleep(max(0.0, begun + index * pace - time.time()))
            self.drain_instant(self.virtual)
            crashes = sum(1 for f in injector.log if f.kind in CRASHES)
            if crashes > crashes_seen:
                crashes_seen = crashes
                self.virtual += timedelta(seconds=LEASE_SECONDS + 60)
                say(f"takeover pass as of {self.virtual:%Y-%m-%d %H:%M:%S} (lease end + 60 s)")
                self.drain_instant(self.virtual, 1)
            counts = self.open_rows()
            left = sum(n for status, n in counts.items() if status in ("queued", "sending", "deferred"))
            if index % 5 == 0:
                say(f"virtual {self.virtual:%Y-%m-%d %H:%M}: {self.relay.count:,} received, "
                    f"open {counts}")
            if left == 0 or self.virtual - datetime.now(UTC) > SPAN + timedelta(days=90):
                break
            index += 1
            self.virtual = max(self.virtual + step, self.next_due())

    def finish(self) -> None:
        with self.lock:
            self.stopping = True
            schedulers = list(self._schedulers)
        for child in schedulers:
            child.end(timeout=60)
        # Past every lease and every retry, then round the clock: whatever is left goes in its
        # window, in whichever time zone.
        for _ in range(5):
            self.virtual += timedelta(hours=5)
            self.drain_instant(self.virtual)
        time.sleep(2)

    def cleanup(self) -> None:
        for child in self.children:
            child.end(timeout=5)
        if self.relay_server is not None:
            self.relay_server.stop()
        if hasattr(self, "engine"):
            self.engine.dispose()
        self.cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 people, about 2.5 minutes")
    parser.add_argument("--minutes", type=float, default=None, help="real duration (default 10)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--faults", type=int, default=3, help="times each fault kind is injected")
    parser.add_argument("--actions", type=int, default=None, help="web actions of each kind")
    parser.add_argument("--step-hours", type=float, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else 2.5 if args.quick else 10.0
    people = args.people if args.people is not None else 5000 if args.quick else 50000
    # Not whole days: each instant falls an hour earlier in the day than the one before, so every
    # local send window comes round, rather than the same hours of UTC over and over.
    args.step_hours = args.step_hours or (47.0 if args.quick else 11.5)
    actions = args.actions if args.actions is not None else max(5, people // 200)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    say(f"chaos soak: seed {seed} (--seed {seed} replays the draws), {people:,} people, "
        f"{minutes:g} min, {args.faults} of each fault, {actions} of each web action")
    quiet_logging()
    work = Path(tempfile.mkdtemp(prefix="nurture-chaos-"))
    soak = Soak(args, seed, work)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.time()
    try:
        soak.setup(people)
        soak.start_services()
        injector = Injector(soak, random.Random(seed + 1), minutes * 60, args.faults)
        from sqlalchemy import select

        from nurture.store.models import Subscriber

        with soak.engine.connect() as conn:
            everyone = [(row.id, row.email) for row in conn.execute(
                select(Subscriber.id, Subscriber.email).order_by(Subscriber.email))]
        actor = Actor(base_url=f"http://127.0.0.1:{soak.web_port}", links=link_maker(),
                      api_key=API_KEY, people=everyone, per_kind=actions, seconds=minutes * 60,
                      rng=random.Random(seed + 2), virtual_now=lambda: soak.virtual)
        injector.start()
        actor.start()
        try:
            soak.clock_loop(injector, minutes * 60)
        finally:
            injector.stop()
            actor.stop()
        soak.finish()
        table = check(soak, injector, actor, duration=time.time() - started)
        table["seed"] = seed
        print_table(table)
        if args.json_out is not None:
            args.json_out.write_text(json.dumps(table, indent=2, default=str), encoding="utf-8")
        return 1 if table["broken"] else 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        soak.cleanup()
        if args.keep:
            say(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
