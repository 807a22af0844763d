"""Aligned tables and funnel bars for `nurture stats` and `nurture status` when stdout is a
terminal (rich; colour where the terminal has it). Piped output stays the plain text scripts read."""

from __future__ import annotations

import sys
from collections.abc import Sequence as Seq
from datetime import datetime
from itertools import groupby
from typing import TYPE_CHECKING, Protocol

from nurture.store.stats import DELIVERY_COLUMNS, StepStats

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from nurture.store.operations import QueueHealth


class Heartbeat(Protocol):
    """What `status` shows of a scheduler process (a row the store read)."""

    @property
    def owner(self) -> str: ...
    @property
    def last_tick_at(self) -> datetime: ...
    @property
    def ticks(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def content_version(self) -> str | None: ...
    @property
    def stopped_at(self) -> datetime | None: ...


BAR_WIDTH = 24
# Eighths of a cell, so that a bar grows smoothly rather than a whole cell at a time.
_PARTS = " ▏▎▍▌▋▊▉"


def for_a_person() -> bool:
    """Whether stdout is a terminal, where a table is read by eye rather than by a script."""
    return sys.stdout.isatty()


def funnel_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar `width` cells long at most, filled to `fraction` (clamped to 0..1)."""
    eighths = round(max(0.0, min(fraction, 1.0)) * width * 8)
    whole, part = divmod(eighths, 8)
    return ("█" * whole + (_PARTS[part] if part else "")).ljust(width)


def funnel(rows: Seq[StepStats]) -> list[float | None]:
    """Each step's sent count relative to the first step of its sequence (to the largest count
    when the first step has sent nothing yet); None while nothing at all is sent. `rows` are of
    one sequence, in step order."""
    sent = [row.counts.get("sent", 0) for row in rows]
    base = sent[0] if sent and sent[0] else max(sent, default=0)
    return [count / base if base else None for count in sent]


def _text(value: str) -> str:
    """Names from content or the database, shown as written (never read as rich markup)."""
    from rich.markup import escape

    return escape(value)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _table(title: str, *headers: str, left: int = 1) -> Table:
    """A table whose first `left` columns are text and the others right-aligned numbers."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  header_style="bold cyan")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < left else "right", no_wrap=True)
    return table


def print_stats(rows: Seq[StepStats]) -> None:
    """One table per sequence: deliveries by status, what people did after each step, and the
    funnel of sent emails as bars."""
    console = _console()
    if not rows:
        console.print("(no deliveries yet)")
        return
    for sequence, group in groupby(rows, key=lambda row: row.sequence):
        steps = list(group)
        table = _table(f"{_text(sequence)}: per-step results", "step", *DELIVERY_COLUMNS,
                       "unsubscribed", "paused", "converted", "sent vs first step", "")
        table.columns[-2].justify = "left"
        for row, fraction in zip(steps, funnel(steps), strict=True):
            table.add_row(
                _text(row.step), *(f"{row.counts.get(c, 0):,}" for c in DELIVERY_COLUMNS),
                f"{row.unsubscribed_after:,}", f"{row.paused_after:,}",
                f"{row.converted_after:,}", f"[green]{funnel_bar(fraction or 0.0)}[/]",
                "-" if fraction is None else f"{fraction:.0%}")
        console.print(table)


def print_status(now: datetime, processes: Seq[Heartbeat], health: QueueHealth) -> None:
    """Scheduler processes, the queue and deliveries by status, one table each."""
    console = _console()
    table = _table("scheduler processes", "owner", "state", "last tick", "ticks", "sent",
                   "content", left=3)
    for p in processes:
        state = (f"[yellow]stopped {age(now, p.stopped_at)}[/]" if p.stopped_at
                 else "[green]running[/]")
        table.add_row(_text(p.owner), state, age(now, p.last_tick_at), f"{p.ticks:,}",
                      f"{p.sent:,}", _text(p.content_version or "-"))
    if not processes:
        table.add_row("[dim]none has run yet[/]", "", "", "", "", "")
    console.print(table)
    queue = _table("queue", "due now", "waiting in all", "oldest due", left=0)
    due = f"[red]{health.due:,}[/]" if health.due else "0"
    queue.add_row(due, f"{health.waiting:,}", age(now, health.oldest_due_at))
    console.print(queue)
    deliveries = _table("deliveries", "status", "count")
    for status, count in sorted(health.by_status.items()):
        deliveries.add_row(_text(status), f"{count:,}")
    console.print(deliveries)


def age(now: datetime, moment: datetime | None) -> str:
    """How long ago `moment` was, in the largest unit that reads well."""
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"
