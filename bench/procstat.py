"""CPU time of processes from Linux /proc, for saying who spent the CPU during a benchmark: one
process, a process with all its descendants (children still running and children already reaped),
and a ledger for a changing set of processes (a server's backends come and go)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 onwards), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User plus system CPU of a live process; with `reaped_children`, plus that of the children
    it has waited for (which no longer show in /proc). NaN when the process is gone."""
    fields = _fields(pid)
    if fields is None:
        return math.nan
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot): with the pid, says which process."""
    fields = _fields(pid)
    return int(fields[19]) if fields is not None else None


def parent_pid(pid: int) -> int | None:
    fields = _fields(pid)
    return int(fields[1]) if fields is not None else None


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The live children of `pid`, from every one of its threads."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop()
        out.append(child)
        pending.extend(children(child))
    return out


@dataclass(frozen=True)
class TreeCpu:
    own: float
    """The process itself."""
    total: float
    """The process, its live descendants, and every child any of them has reaped."""

    @property
    def descendants(self) -> float:
        return self.total - self.own

    def __sub__(self, other: TreeCpu) -> TreeCpu:
        return TreeCpu(self.own - other.own, self.total - other.total)


def tree_cpu(pid: int) -> TreeCpu:
    """CPU of `pid` and its descendants. A child reaped between two readings moves from the live
    sum into its parent's reaped-children time, so differences of two readings stay right; one
    that exited and was not yet reaped is still in /proc and counts too."""
    own = cpu_seconds(pid)
    total = cpu_seconds(pid, reaped_children=True)
    for child in descendants(pid):
        seconds = cpu_seconds(child, reaped_children=True)
        if not math.isnan(seconds):
            total += seconds
    return TreeCpu(own, total)


@dataclass
class Ledger:
    """CPU spent by a changing set of processes from `begin()` on, each under a label. Processes
    seen at `begin()` count from their CPU then; processes first seen later count from zero (they
    started after it). A process that exits loses what it spent since it was last observed."""

    entries: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    labels: dict[tuple[int, int], str] = field(default_factory=dict)
    begun: bool = False

    def observe(self, pid: int, label: str) -> None:
        started = start_ticks(pid)
        seconds = cpu_seconds(pid)
        if started is None or math.isnan(seconds):
            return
        key = (pid, started)
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = [0.0 if self.begun else seconds, seconds]
            self.labels[key] = label
        else:
            entry[1] = seconds

    def begin(self) -> None:
        """Forget what was observed so far except as a baseline; call after observing the current
        processes (entries not observed since are dropped by `restart`)."""
        self.begun = True

    def restart(self) -> None:
        self.entries.clear()
        self.labels.clear()
        self.begun = False

    def by_label(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, (first, last) in self.entries.items():
            out[self.labels[key]] = out.get(self.labels[key], 0.0) + last - first
        return out

    def total(self) -> float:
        return sum(last - first for first, last in self.entries.values())
