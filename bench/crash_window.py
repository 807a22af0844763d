"""Benchmark, crash window: how many emails a kill -9 of `nurture dispatch` at full speed sends twice.

Per backend (SQLite, PostgreSQL): N deliveries (6,000; `--quick` 2,000) all due now, in the bench's
one-step sequence, are sent by the real `python -m nurture dispatch` into Postfix's `smtp-sink`
keeping every message (`-D`, for Message-IDs, in arrival order). The process is killed with SIGKILL
three times, each time after a random number of messages past a warm-up of 100 since its start (a
seeded RNG: the seed is printed; `python -m bench.crash_window --seed N` repeats a run), so that it is
sending at full speed when it dies; after each kill the bench waits until its SMTP child (which sends
what is already in its socket, then finds the parent gone) has exited, then starts it again. When the
last restart has finished (exit 0), `nurture dispatch --now <2 minutes past the lease end>` takes over
the killed processes' leased rows (the lease is 30 s; the time is passed, not slept).

Counted from the dump: received, distinct Message-IDs, duplicates (received - distinct), lost
(Message-IDs of the delivery rows never received), and per kill the duplicates whose first copy
arrived in that process's life (before the kill, or after it from the orphaned SMTP child) with the
age of the oldest one at the kill. The rate is taken at the sink (a thread samples its counter).
Target: at most `SEND_AHEAD_LIMIT` (64) duplicates per crash, none lost, every row `sent`.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_SEQUENCE,
    MESSAGE_ID_DOMAIN,
    Options,
    backends_available,
    database,
    enroll_people,
    fmt_rate,
    make_bench_content,
    people,
    print_rows,
    quiet_logging,
    result,
    row,
    scheduler_env,
    scratch_dir,
)
from bench.scaleout import dump_dir
from bench.smtp_sink import INSTALL_HINT, SinkProcess, sink_binary

NAME = "crash_window"
KILLS = 3
LEASE_SECONDS = 30
WARMUP = 100
"""Messages a (re)started process sends before the kill target is drawn: start-up is not timed."""
PRE_KILL_SECONDS = 0.25
"""The rate in this long before a kill shows whether the process was at full speed."""
SAMPLE_SECONDS = 0.002
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def send_ahead_limit() -> int:
    from nurture.engine.pacing import SEND_AHEAD_LIMIT

    return SEND_AHEAD_LIMIT


class Timeline:
    """A thread noting (monotonic time, sink count) whenever the sink's counter moves."""

    def __init__(self, sink: SinkProcess) -> None:
        self.sink = sink
        self.times: list[float] = []
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="crash window timeline")

    def start(self) -> Timeline:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            count = self.sink.messages
            if not self.counts or count != self.counts[-1]:
                self.times.append(time.monotonic())
                self.counts.append(count)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def time_of(self, nth: int) -> float:
        """When the `nth` message (1-based) had arrived, to the sampling interval."""
        index = bisect.bisect_left(self.counts, nth)
        return self.times[min(index, len(self.times) - 1)]

    def count_at(self, moment: float) -> int:
        index = bisect.bisect_right(self.times, moment) - 1
        return self.counts[index] if index >= 0 else 0


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


class Dispatch:
    """`python -m nurture dispatch` in a process group of its own (with its SMTP child)."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str, *args: str) -> None:
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.stdout_path = workdir / f"{name}.stdout.log"
        with open(self.stderr_path, "wb") as stderr, open(self.stdout_path, "wb") as stdout:
            # cwd: a scratch folder, so no .env file of the repository is read.
            self.process = subprocess.Popen([sys.executable, "-m", "nurture", "dispatch", *args],
                                            env=env, cwd=workdir, stdout=stdout, stderr=stderr,
                                            stdin=subprocess.DEVNULL, process_group=0)

    def tail(self, lines: int = 5) -> str:
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:])

    def wait_sink(self, sink: SinkProcess, count: int, timeout: float = 120) -> int:
        """Wait until the sink counted `count`; raises if the process ends first or it stalls."""
        deadline = time.monotonic() + timeout
        while (got := sink.wait_for(count, 0.05)) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"nurture dispatch ended ({self.process.returncode}) at "
                                   f"{got:,} messages, before {count:,}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got:,} of {count:,} messages in {timeout:g} s")
        return got

    def kill_9(self, timeout: float = 30) -> None:
        """SIGKILL to the dispatcher alone, as a crash; then wait for its orphaned SMTP child (it
        sends what is already in its socket, then finds the parent gone) to exit by itself."""
        self.process.kill()
        self.process.wait()
        deadline = time.monotonic() + timeout
        while group_alive(self.process.pid):
            if time.monotonic() > deadline:
                self.end()
                raise RuntimeError("the killed dispatcher's SMTP child did not exit")
            time.sleep(0.01)

    def end(self) -> None:
        """After an error: SIGKILL to the process group while its leader runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def last_run(dispatch: Dispatch, sink: SinkProcess, timeline: Timeline,
             base: int) -> dict[str, Any]:
    """The restart after the last kill, run to its end: its rate after the warm-up (or all of it
    when it sent fewer)."""
    if (code := dispatch.process.wait(timeout=600)) != 0:
        raise RuntimeError(f"the last restart exited with {code}: {dispatch.tail()}")
    end = settle(sink)
    warm = base + WARMUP if end - base > 2 * WARMUP else base + 1
    return {"base": base, "warm": warm, "warm_at": timeline.time_of(warm), "end": end,
            "end_at": timeline.time_of(end)}


def settle(sink: SinkProcess, quiet: float = 0.5) -> int:
    """The sink's count once it has not moved for `quiet` seconds."""
    count = sink.messages
    while (now := sink.wait_for(count + 1, quiet)) > count:
        count = now
    return count


def dumped_ids(dumps: Path) -> list[str]:
    """Message-IDs of the dump in arrival order (smtp-sink appends each message as it ends)."""
    return [found.decode("ascii", "replace")
            for found in _MESSAGE_ID.findall((dumps / "messages").read_bytes())]


def measure(options: Options, backend: str, work: Path, content: Any, holder: Any, count: int,
            seed: int) -> dict[str, Any]:
    from sqlalchemy import select

    from nurture.clock import utcnow
    from nurture.engine.decisions import message_id_for
    from nurture.store.database import make_engine
    from nurture.store.models import Delivery
    from nurture.store.sql.store import SqlStore

    rng = random.Random(seed)
    kills: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with dump_dir() as dumps, SinkProcess(dump_dir=dumps) as sink, \
            database(backend, options, work) as url:
        engine = make_engine(url)
        timeline = Timeline(sink).start()
        try:
            store = SqlStore(engine)
            enroll_people(store, holder.current, BENCH_SEQUENCE, people(count, prefix="cw-"),
                          now=utcnow())
            env = scheduler_env(database_url=url, smtp_port=sink.port, content=content, tick=1.0)
            env["NURTURE_LEASE_SECONDS"] = str(LEASE_SECONDS)
            dispatch: Dispatch | None = None
            try:
                for number in range(KILLS + 1):
                    base = sink.messages
                    dispatch = Dispatch(env, work, f"{backend}-{number}", "--json")
                    if number == KILLS:
                        runs.append(last_run(dispatch, sink, timeline, base))
                        break
                    warm = dispatch.wait_sink(sink, base + WARMUP)
                    warm_at = time.monotonic()
                    target = warm + rng.randint(0, count // 15)
                    dispatch.wait_sink(sink, target)
                    dispatch.process.kill()
                    killed_at = time.monotonic()
                    at_kill = sink.messages
                    dispatch.kill_9()
                    boundary = settle(sink, quiet=0.2)
                    kills.append({"target": target, "at_kill": at_kill, "killed_at": killed_at,
                                  "boundary": boundary,
                                  "stranded": store.counts_by_status()["sending"]})
                    runs.append({"base": base, "warm": warm, "warm_at": warm_at, "end": at_kill,
                                 "end_at": killed_at})
                    options.say(f"crash window {backend}: kill {number + 1} at {at_kill:,} "
                                f"messages (target {target:,}); {boundary - at_kill} more from its "
                                "SMTP child")
            finally:
                if dispatch is not None:
                    dispatch.end()
            later = utcnow() + timedelta(seconds=LEASE_SECONDS, minutes=2)
            final = subprocess.run([sys.executable, "-m", "nurture", "dispatch", "--now",
                                    later.isoformat(), "--json"], env=env, cwd=work,
                                   capture_output=True, text=True, timeout=300, check=False)
            if final.returncode != 0:
                raise RuntimeError(f"the final dispatch exited {final.returncode}: {final.stderr[-500:]}")
            settle(sink)
            ids = dumped_ids(dumps)
            with engine.connect() as conn:
                delivery_ids = list(conn.scalars(select(Delivery.id)))
            statuses = store.counts_by_status()
        finally:
            timeline.stop()
            engine.dispose()
    expected = {message_id_for(delivery_id, MESSAGE_ID_DOMAIN) for delivery_id in delivery_ids}
    return tally(options, backend, count, ids, expected, kills, runs, timeline, statuses,
                 final_sent=int(json.loads(final.stdout.strip().splitlines()[-1])["sent"]))


def tally(options: Options, backend: str, count: int, ids: list[str], expected: set[str],
          kills: list[dict[str, Any]], runs: list[dict[str, Any]], timeline: Timeline,
          statuses: dict[str, int], *, final_sent: int) -> dict[str, Any]:
    first: dict[str, int] = {}
    duplicate_firsts: list[int] = []
    for position, message_id in enumerate(ids):
        if message_id in first:
            duplicate_firsts.append(first[message_id])
        else:
            first[message_id] = position
    # A duplicate belongs to the kill whose process (or orphaned SMTP child) sent its first copy:
    # the arrivals between the previous kill's last message and this one's.
    lower = 0
    for kill in kills:
        mine = [p for p in duplicate_firsts if lower <= p < kill["boundary"]]
        kill["duplicates"] = len(mine)
        kill["first_copies_after_kill"] = sum(1 for p in mine if p >= kill["at_kill"])
        oldest = min(mine, default=None)
        kill["oldest_messages_before_kill"] = kill["at_kill"] - oldest if oldest is not None else 0
        kill["oldest_ms_before_kill"] = (
            (kill["killed_at"] - timeline.time_of(oldest + 1)) * 1000 if oldest is not None
            else 0.0)
        before = kill["killed_at"] - PRE_KILL_SECONDS
        kill["pre_kill_rate"] = (kill["at_kill"] - timeline.count_at(before)) / PRE_KILL_SECONDS
        lower = kill["boundary"]
    for run in runs:
        span = run["end_at"] - run["warm_at"]
        run["rate"] = (run["end"] - run["warm"]) / span if span > 0 else float("nan")
    unattributed = sum(1 for p in duplicate_firsts if p >= lower)
    per_kill = [kill["duplicates"] for kill in kills]
    duplicates = len(ids) - len(first)
    # Duplicates no kill explains make the attribution unsure: count them all against the worst.
    worst = max(per_kill, default=0) if unattributed == 0 else duplicates
    sent_time = sum(run["end_at"] - run["warm_at"] for run in runs)
    measured: dict[str, Any] = {
        "backend": backend, "deliveries": count, "received": len(ids), "distinct": len(first),
        "duplicates": duplicates, "lost": len(expected - set(first)),
        "unknown_ids": len(set(first) - expected), "per_kill": per_kill, "worst": worst,
        "mean": duplicates / len(kills) if kills else 0.0, "unattributed": unattributed,
        "rate": sum(run["end"] - run["warm"] for run in runs) / sent_time if sent_time > 0 else 0.0,
        "sent_rows": statuses.get("sent", 0), "statuses": statuses, "final_sent": final_sent,
        "kills": [{k: v for k, v in kill.items() if k != "killed_at"} for kill in kills],
        "runs": [{k: v for k, v in run.items() if not k.endswith("_at")} for run in runs],
    }
    options.say(f"crash window {backend}: {duplicates} duplicates {per_kill} per kill, "
                f"{measured['lost']} lost, {fmt_rate(measured['rate'])}")
    return measured


def backend_row(m: dict[str, Any]) -> dict[str, Any]:
    limit = send_ahead_limit()
    complete = m["sent_rows"] == m["deliveries"] and m["unknown_ids"] == 0
    return row(f"crash window {m['backend']}: kill -9 ×{KILLS} of nurture dispatch at full speed, "
               f"{m['deliveries']:,} emails",
               measured=f"{m['worst']} worst, {m['mean']:.1f} mean dup per crash, {m['lost']} lost",
               baseline=f"{limit} (SEND_AHEAD_LIMIT)", ratio=m["worst"] / limit,
               target=f"≤ {limit} per crash, 0 lost", met=m["worst"] <= limit and m["lost"] == 0,
               measured_value=float(m["worst"]), baseline_value=float(limit),
               unit="duplicates per crash",
               note="" if complete else f"sent rows {m['sent_rows']:,} of {m['deliveries']:,}, "
                                        f"{m['unknown_ids']} unknown Message-IDs")


def backend_note(m: dict[str, Any]) -> str:
    kills = "; ".join(
        f"kill {i + 1} at {k['at_kill']:,}: {k['duplicates']} dup ({k['first_copies_after_kill']} "
        f"first sent by the orphaned SMTP child), oldest {k['oldest_messages_before_kill']} msgs / "
        f"{k['oldest_ms_before_kill']:.0f} ms before the kill, {k['stranded']} rows leased in all, "
        f"{fmt_rate(k['pre_kill_rate'])} in the last {PRE_KILL_SECONDS:g} s"
        for i, k in enumerate(m["kills"]))
    return (f"{m['backend']}: {m['deliveries']:,} deliveries, {m['received']:,} received, "
            f"{m['distinct']:,} distinct, {m['duplicates']} duplicates ({m['unattributed']} "
            f"unattributed), {m['lost']} lost; sent rows {m['sent_rows']:,}; final dispatch sent "
            f"{m['final_sent']}; rate after warm-up {fmt_rate(m['rate'])} (runs: "
            f"{', '.join(fmt_rate(r['rate']) for r in m['runs'])}); {kills}")


def run(options: Options, *, seed: int | None = None) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    seed = random.randrange(1_000_000) if seed is None else seed
    limit = send_ahead_limit()
    target = f"≤ {limit} per crash, 0 lost"
    if sink_binary() is None:
        return result(NAME, [row("crash window: skipped", measured="smtp-sink not installed",
                                 baseline="—", ratio=None, target=target, met=None,
                                 note=INSTALL_HINT)], {"skipped": INSTALL_HINT}, [INSTALL_HINT])
    count = options.emails or options.pick(6_000, 2_000)
    backends, skipped = backends_available(options)
    rows: list[dict[str, Any]] = []
    notes = [f"seed {seed} (repeat: python -m bench.crash_window --seed {seed}"
             f"{' --quick' if options.quick else ''}); lease {LEASE_SECONDS} s, warm-up {WARMUP} "
             f"messages, kill drawn in [0, {count // 15}] messages past it"]
    details: dict[str, Any] = {"seed": seed, "emails": count, "kills": KILLS, "skipped": skipped}
    options.say(f"crash window: seed {seed}")
    with scratch_dir() as work:
        content = make_bench_content(work)
        holder = ContentHolder(content.sequences_dir, content.templates_dir)
        for backend in backends:
            measured = measure(options, backend, work, content, holder, count, seed)
            details[backend] = measured
            rows.append(backend_row(measured))
            notes.append(backend_note(measured))
    for backend, problem in skipped.items():
        rows.append(row(f"crash window {backend}: skipped", measured=problem[:100], baseline="—",
                        ratio=None, target=target, met=None))
    return result(NAME, rows, details, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_window", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 deliveries, not 6,000")
    parser.add_argument("--emails", type=int, help="deliveries per backend")
    parser.add_argument("--seed", type=int, help="seed of the kill points (default: random)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="default both")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, emails=args.emails,
                      backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()))
    for key in [k for k in os.environ if k.startswith("NURTURE_")]:
        del os.environ[key]  # as python -m bench does: children get the bench's settings alone
    res = run(options, seed=args.seed)
    print_rows(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
