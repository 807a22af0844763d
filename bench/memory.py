"""Benchmark 5, memory: peak RSS of a child process that dispatches 10k and then 100k queued emails
(2k and 20k with --quick) into the bench SMTP server, from a fresh SQLite database each time.

The child (`python -m bench.memory --child ...`) reports its peak RSS after its Dispatcher.run, and
its peak before dispatching (imports, content, engine). A pipeline that holds nothing per email
beyond a batch peaks at the same height for both sizes.

The peak is the child's own high-water mark, VmHWM in /proc/self/status. resource.getrusage's
ru_maxrss is recorded too but not compared: Linux keeps it across execve, so a child started by a
large parent (this one, after the e2e benchmark held 20,000 messages) inherits the parent's peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_SEQUENCE,
    ROOT,
    Options,
    database,
    enroll_people,
    fmt_bytes,
    make_bench_content,
    people,
    quiet_logging,
    result,
    row,
    scratch_dir,
)
from bench.smtp_server import ServerProcess

NAME = "memory"
TARGET = 1.2


def _status_kb(field: str) -> int | None:
    """A VmRSS/VmHWM value of this process in KiB (Linux), None elsewhere."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _peak_kb() -> int:
    """This process's own peak RSS: VmHWM (reset by execve), else ru_maxrss."""
    import resource

    own = _status_kb("VmHWM")
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(argv: list[str]) -> int:
    """Runs in the child: dispatch everything due, print one JSON line about memory."""
    import resource

    parser = argparse.ArgumentParser(prog="python -m bench.memory --child")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--content", type=Path, required=True)
    args = parser.parse_args(argv)

    from bench.common import data_key, make_dispatcher
    from nurture.clock import utcnow
    from nurture.content.library import ContentHolder
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    quiet_logging()
    data_key()
    holder = ContentHolder(args.content / "sequences", args.content / "templates")
    engine = make_engine(args.database_url)
    store = SqlStore(engine)
    dispatcher = make_dispatcher(store, holder, args.smtp_port)
    before = _peak_kb()
    started = time.perf_counter()
    report = dispatcher.run(utcnow())
    seconds = time.perf_counter() - started
    dispatcher.transport.close()
    sys.stdout.write(json.dumps({
        "peak_kb": _peak_kb(), "peak_before_dispatch_kb": before,
        "rss_after_kb": _status_kb("VmRSS"),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "sent": report.sent, "claimed": report.claimed, "seconds": seconds}) + "\n")
    engine.dispose()
    return 0


def measure(options: Options, work: Path, content: Any, holder: Any, server: ServerProcess,
            count: int) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    with database("sqlite", options, work) as url:
        engine = make_engine(url)
        try:
            enroll_people(SqlStore(engine), holder.current, BENCH_SEQUENCE,
                          people(count, prefix="m"), now=utcnow() - timedelta(minutes=1))
        finally:
            engine.dispose()
        server.reset()
        done = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", "--database-url", url,
             "--smtp-port", str(server.smtp_port), "--content", str(content.root)],
            cwd=ROOT, capture_output=True, text=True, timeout=max(600, count / 20), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"dispatch child failed ({done.returncode}): {done.stderr[-2000:]}")
        measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        measured["server_received"] = server.wait_for(count, 30)["messages"]
    measured["emails"] = count
    options.say(f"memory: {count:,} emails, peak RSS {measured['peak_kb'] / 1024:.1f} MiB, "
                f"{count / measured['seconds']:,.0f} emails/s")
    return measured


def run(options: Options) -> dict[str, Any]:
    from nurture.content.library import ContentHolder

    quiet_logging()
    small, large = options.pick(10_000, 2_000), options.pick(100_000, 20_000)
    with scratch_dir() as work, ServerProcess() as server:
        content = make_bench_content(work)
        holder = ContentHolder(content.sequences_dir, content.templates_dir)
        little = measure(options, work, content, holder, server, small)
        big = measure(options, work, content, holder, server, large)
    ratio = big["peak_kb"] / little["peak_kb"]
    complete = little["sent"] == small and big["sent"] == large
    rows = [row(f"memory: peak RSS of a dispatch child, {large:,} vs {small:,} emails (SQLite)",
                measured=fmt_bytes(big["peak_kb"] * 1024),
                baseline=fmt_bytes(little["peak_kb"] * 1024), ratio=ratio,
                target=f"≤ {TARGET:g}", met=ratio <= TARGET and complete,
                measured_value=big["peak_kb"] * 1024.0,
                baseline_value=little["peak_kb"] * 1024.0, unit="bytes")]
    notes = [f"peak before dispatching (imports, content, engine): "
             f"{fmt_bytes(little['peak_before_dispatch_kb'] * 1024)}; dispatch rate "
             f"{small / little['seconds']:,.0f} and {large / big['seconds']:,.0f} emails/s; "
             f"ru_maxrss {fmt_bytes(little['ru_maxrss_kb'] * 1024)} and "
             f"{fmt_bytes(big['ru_maxrss_kb'] * 1024)} (inherits the parent's peak across exec)"]
    return result(NAME, rows, {"small": little, "large": big}, notes)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2:]))
    sys.exit("usage: python -m bench.memory --child ... (run the benchmark with python -m bench)")
