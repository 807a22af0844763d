"""Progress bars for long commands, drawn on stderr only when stderr is a terminal.

A command opens `progress()` and asks it for one callback per phase; the store and engine get
that plain callback (`nurture.engine.ports.Progress`) and never see rich. Off a terminal the
callbacks do nothing and rich is not even imported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

from nurture.engine.ports import Progress

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import Task
    from rich.text import Text

T = TypeVar("T")


def _nothing(done: int, total: int) -> None:
    """The callback of a phase nobody watches."""


class Phases(Protocol):
    def phase(self, description: str, total: int | None = None) -> Progress:
        """A new bar for a phase of the work; the callback moves it to (done, total)."""
        ...


class _Silent:
    def phase(self, description: str, total: int | None = None) -> Progress:
        return _nothing


class _Bars:
    """rich.progress bars: description, bar, done/total, rate and time remaining."""

    def __init__(self, bars: RichProgress) -> None:
        self._bars = bars

    def phase(self, description: str, total: int | None = None) -> Progress:
        task = self._bars.add_task(description, total=total)

        def report(done: int, total: int) -> None:
            self._bars.update(task, completed=done, total=total)

        return report


def on_terminal() -> bool:
    """Whether a person is likely watching stderr."""
    return sys.stderr.isatty()


@contextmanager
def progress(enabled: bool = True) -> Iterator[Phases]:
    """Bars on stderr while the block runs, if `enabled` and stderr is a terminal; the bars stay
    on the screen afterwards, showing where each phase ended."""
    if not (enabled and on_terminal()):
        yield _Silent()
        return
    bars, stderr = _rich_bars(), sys.stderr
    with bars, _logs_above_the_bars(stderr):
        yield _Bars(bars)


@contextmanager
def _logs_above_the_bars(original: object) -> Iterator[None]:
    """Log handlers that write to stderr write through rich's proxy while the bars are drawn, so
    a log line is printed above them instead of tearing through them."""
    import logging

    proxy = sys.stderr  # rich has put its proxy in place of `original` by now
    moved = [handler for handler in logging.getLogger().handlers
             if isinstance(handler, logging.StreamHandler) and handler.stream is original]
    for handler in moved:
        handler.setStream(proxy)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(original)


def counted(items: Iterable[T], report: Progress, total: int) -> Iterator[T]:
    """`items` as they are, reporting each one done: for work that comes one item at a time."""
    for done, item in enumerate(items, start=1):
        yield item
        report(done, max(total, done))


def _rich_bars() -> RichProgress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    class RateColumn(ProgressColumn):
        """Units per second, whatever the unit: rows, people, messages."""

        def render(self, task: Task) -> Text:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")

    # stdout is not redirected: a command's output must go where the person sent it. What is
    # written to stderr meanwhile is printed above the bars.
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TaskProgressColumn(), RateColumn(),
                    TimeRemainingColumn(), console=Console(file=sys.stderr),
                    redirect_stdout=False, redirect_stderr=True)
