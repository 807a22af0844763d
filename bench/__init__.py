"""Benchmarks of the send path. Run them all with `python -m bench` (or `bench/run`), a shorter
version with `--quick`, a few with `--only render,e2e`. Each benchmark module has a `run(options)`
that returns a result dict with table rows (benchmark, measured, baseline, ratio, target, met);
every baseline is measured in the same run. The report goes to bench/results/ (git-ignored).
"""

from __future__ import annotations

# Name -> target, in the order they run.
BENCHMARKS: dict[str, str] = {
    "render": "ours ≥ 20× naive; same HTML and text",
    "experiments": "drawing the arm + rendering a variant ≤ 1.05× the step as written",
    "e2e": "≥ 0.8 of a raw 1-connection smtplib blast into smtp-sink and ≥ 1,000 emails/s",
    "growth": "claim+record per email, 1M vs 10k history: ≤ 1.5 PostgreSQL, ≤ 2 SQLite",
    "lateness": "p99 due-to-sent ≤ tick + 1 s",
    "memory": "peak RSS 100k vs 10k emails ≤ 1.2",
    "scaleout": "two schedulers ≥ 0.8 of a raw 2-connection blast into smtp-sink, zero "
                "duplicates; ≥ 1.8× one at +20 ms (aiosmtpd)",
    "relay_pool": "relay 20 ms away: 4 connections ≥ 3× one",
    "drain": "1,000,000 due emails drained in under 10 minutes with two processes",
    "cpu_budget": "recorded, no target: CPU µs per email by stage, to compare before/after a change",
    "crash_window": "kill -9 of nurture dispatch at full speed: ≤ 64 duplicates per crash, 0 lost",
}
