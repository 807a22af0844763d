"""The pieces of the terminal output that need no terminal: funnel arithmetic, bar drawing, and
progress that stays silent (and free of rich) when nobody watches."""

from __future__ import annotations

import io

import pytest

from nurture.cli.progress import counted, progress
from nurture.cli.tables import funnel, funnel_bar
from nurture.store.stats import StepStats


def _step(key: str, sent: int) -> StepStats:
    row = StepStats("sample", key)
    row.counts["sent"] = sent
    return row


def test_funnel_is_relative_to_the_first_step() -> None:
    assert funnel([_step("a", 200), _step("b", 150), _step("c", 0)]) == [1.0, 0.75, 0.0]


def test_funnel_falls_back_to_the_largest_step_and_says_nothing_when_nothing_is_sent() -> None:
    assert funnel([_step("a", 0), _step("b", 4), _step("c", 2)]) == [0.0, 1.0, 0.5]
    assert funnel([_step("a", 0), _step("b", 0)]) == [None, None]
    assert funnel([]) == []


@pytest.mark.parametrize(("fraction", "drawn"), [
    (1.0, "████████"), (0.5, "████    "), (0.0, "        "), (1 / 16, "▌       "),
    (2.0, "████████"), (-1.0, "        "),
])
def test_funnel_bar_fills_eighths_of_cells_and_keeps_its_width(fraction: float,
                                                                drawn: str) -> None:
    assert funnel_bar(fraction, width=8) == drawn


def test_progress_off_a_terminal_reports_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    with progress() as bars:
        report = bars.phase("reading rows", total=3)
        assert list(counted(["a", "b", "c"], report, 3)) == ["a", "b", "c"]
    assert stderr.getvalue() == ""


def test_counted_reports_each_item_after_it_is_used() -> None:
    reports: list[tuple[int, int]] = []
    seen = []
    for item in counted(iter("xyz"), lambda done, total: reports.append((done, total)), 2):
        seen.append((item, len(reports)))
    assert seen == [("x", 0), ("y", 1), ("z", 2)]
    assert reports == [(1, 2), (2, 2), (3, 3)], "a low estimate of the total grows with the count"
