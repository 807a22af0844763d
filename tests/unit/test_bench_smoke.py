"""The benchmark suite still runs: the render benchmark on a few personas, and the report it makes.

Timings are never asserted here; bench/ measures them (python -m bench).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench import BENCHMARKS
from bench.common import Options
from bench.render import run
from bench.report import COLUMNS, build, markdown, text_table, write


def test_render_benchmark_and_report_structure(tmp_path: Path) -> None:
    progress: list[str] = []
    options = Options(quick=True, personas=2, log=progress.append)

    result = run(options)

    assert result["name"] == "render" and "render" in BENCHMARKS
    assert result["rows"], "a benchmark reports at least one table row"
    for item in result["rows"]:
        assert set(COLUMNS) <= set(item)
        assert isinstance(item["met"], bool)
    details = result["details"]
    assert details["personas"] == 2
    assert details["emails"] == 2 * len(details["steps"])
    assert details["mismatches"] == 0, details["mismatch_examples"]
    assert progress

    report = build([result], options, started=datetime.now(UTC), env={"python": "test"})
    md_path, json_path = write(report, tmp_path)
    stored = json.loads(json_path.read_text(encoding="utf-8"))
    assert stored["columns"] == list(COLUMNS)
    assert stored["mode"] == "quick"
    assert [r["benchmark"] for r in stored["rows"]] == [r["benchmark"] for r in result["rows"]]
    table = text_table([result])
    assert table.splitlines()[0].split() == list(COLUMNS)
    assert "| benchmark | measured | baseline | ratio | target | met |" in markdown(report)
    assert md_path.read_text(encoding="utf-8").startswith("# nurture benchmarks")
