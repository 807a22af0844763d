"""The report: one table (benchmark, measured, baseline, ratio, target, met) as text, Markdown, JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT

COLUMNS = ("benchmark", "measured", "baseline", "ratio", "target", "met")
REPORT_VERSION = 1


def met_text(met: bool | None) -> str:
    return "yes" if met is True else "no" if met is False else "n/a"


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:,.1f}"


def cells(item: dict[str, Any]) -> list[str]:
    return [str(item["benchmark"]), str(item["measured"]), str(item["baseline"]),
            ratio_text(item["ratio"]), str(item["target"]), met_text(item["met"])]


def all_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for res in results for item in res["rows"]]


def text_table(results: list[dict[str, Any]]) -> str:
    lines = [list(COLUMNS), *(cells(item) for item in all_rows(results))]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for number, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(results: list[dict[str, Any]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in cells(item)) + " |" for item in all_rows(results)]
    return "\n".join(lines)


def environment(options: Any) -> dict[str, Any]:
    from bench.common import postgres_version

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False)
        except OSError:
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "postgresql": postgres_version(options.postgres_url),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "src", "templates", "sequences")),
    }


def build(results: list[dict[str, Any]], options: Any, *, started: datetime,
          env: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = all_rows(results)
    return {
        "version": REPORT_VERSION,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if options.quick else "full",
        "tick_seconds": options.tick,
        "environment": env if env is not None else environment(options),
        "columns": list(COLUMNS),
        "rows": rows,
        "benchmarks": results,
        "all_met": all(item["met"] is True for item in rows),
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# nurture benchmarks",
        "",
        f"Mode **{report['mode']}**, started {report['started_at']}, finished {report['finished_at']}. "
        f"Python {env.get('python')}, {env.get('cpus')} CPU(s), PostgreSQL {env.get('postgresql')}, "
        f"commit {env.get('git_commit')}{' (with local changes)' if env.get('git_dirty') else ''}. "
        f"Load average {env.get('load_average_before', ['?'])[0]} before, "
        f"{env.get('load_average_after', ['?'])[0]} after.",
        "",
        "Every ratio compares two measurements taken in this same run.",
        "",
        markdown_table(report["benchmarks"]),
        "",
    ]
    for res in report["benchmarks"]:
        lines.append(f"## {res['name']}")
        lines.append("")
        if res.get("error"):
            lines += ["Failed:", "", "```", res["error"].rstrip(), "```", ""]
        for note in res.get("notes", []):
            lines.append(f"- {note}")
        if res.get("seconds") is not None:
            lines.append(f"- took {res['seconds']:.1f} s")
        lines += ["", "<details><summary>details</summary>", "", "```json",
                  json.dumps(res.get("details", {}), indent=2, default=str), "```", "", "</details>",
                  ""]
    return "\n".join(lines)


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md_path = directory / "report.md"
    json_path = directory / "report.json"
    md_path.write_text(markdown(report), encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return md_path, json_path
