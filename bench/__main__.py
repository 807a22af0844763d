"""`python -m bench [--quick] [--only NAME,...]`: run the benchmarks, print the table, write the report."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import BENCHMARKS
from bench.common import RESULTS_DIR, Options, row
from bench.report import build, text_table, write


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes (a couple of minutes instead of many)")
    parser.add_argument("--only", metavar="NAME,...",
                        help=f"run only these benchmarks, from: {', '.join(BENCHMARKS)}")
    parser.add_argument("--tick", type=float, default=5.0,
                        help="scheduler tick in seconds for the lateness benchmark (default 5)")
    parser.add_argument("--emails", type=int, help="end to end: queued deliveries "
                        "(default 20,000; 2,000 with --quick)")
    parser.add_argument("--personas", type=int, help="render: use only the first N personas")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="databases to use where a benchmark runs on several (default both)")
    parser.add_argument("--postgres-url", help="admin URL of the PostgreSQL server; scratch "
                        "databases are created and dropped there (default $NURTURE_BENCH_POSTGRES_URL "
                        "or postgresql+psycopg://postgres@127.0.0.1:5432/postgres)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="where report.md and report.json go (default bench/results)")
    return parser.parse_args(argv)


def selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; "
                         f"choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def run_one(name: str, options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        res: dict[str, Any] = module.run(options)
    except Exception as error:  # one broken benchmark must not hide the others' results
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        summary = " ".join(f"{type(error).__name__}: {lines[-1] if lines else ''}".split())
        res = {
            "name": name,
            "rows": [row(f"{name}: failed", measured=summary[:140],
                         baseline="—", ratio=None, target=BENCHMARKS[name], met=False)],
            "details": {},
            "notes": [],
            "error": traceback.format_exc(),
        }
    res["seconds"] = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(quick=args.quick, tick=args.tick, personas=args.personas, emails=args.emails,
                      backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()))
    if args.postgres_url:
        options.postgres_url = args.postgres_url
    names = selected(args.only)
    # The bench sets every setting it needs; an operator's NURTURE_RATE_PER_SECOND, say, must not
    # throttle the Dispatchers built in this process (children get a clean environment anyway).
    for key in [k for k in os.environ if k.startswith("NURTURE_")]:
        del os.environ[key]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    results = []
    for name in names:
        sys.stderr.write(f"[bench] {name} ({'quick' if options.quick else 'full'}) ...\n")
        sys.stderr.flush()
        res = run_one(name, options)
        results.append(res)
        sys.stderr.write(f"[bench] {name} done in {res['seconds']:.1f} s\n")
        if res.get("error"):
            sys.stderr.write(res["error"])
        sys.stderr.flush()
    report = build(results, options, started=started)
    report["environment"]["load_average_before"] = [round(x, 2) for x in load_before]
    report["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    md_path, json_path = write(report, args.results)
    print(text_table(results))
    print()
    for res in results:
        for note in res.get("notes", []):
            print(f"  {res['name']}: {note}")
    busy = max(load_before[0], os.getloadavg()[0]) > (os.cpu_count() or 1)
    if busy:
        print(f"\n  note: the machine was busy (load average {load_before[0]:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs): absolute numbers are low")
    print(f"\nreport: {md_path}\n        {json_path}")
    # Targets are goals to track, not assertions: the exit code says only whether everything ran.
    return 1 if any(res.get("error") for res in results) else 0


if __name__ == "__main__":
    sys.exit(main())
